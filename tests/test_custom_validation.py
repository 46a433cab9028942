"""A user's file is read and checked whole before any request (issue 21 §2): a gold the scorer
can never read stops the run with the file and its 1-based row named, and nothing is sent (before,
every request went out and the error said only `sample 1: ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_server import OpenAIServer

from proctor.cli import main

SPEC = """\
name: mynum
source:
  format: jsonl
  layouts: ["num.jsonl"]
prompt:
  preset: free_form
scorer:
  name: numeric
"""


def test_a_bad_gold_is_refused_with_its_row_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "num.jsonl").write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "six"}\n',
                                        encoding="utf-8")
    (tmp_path / "num.yaml").write_text(SPEC, encoding="utf-8")
    with OpenAIServer(responder=lambda body: "4") as server:
        rc = main(["run", "--api-base", server.base_url, "--datasets", str(tmp_path / "num.yaml"),
                   "--data-dir", str(tmp_path), "-w", str(tmp_path / "out")])
        sent = [r for r in server.requests if r.path.endswith("/completions")]
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not sent
    assert err == f"error: {tmp_path / 'num.jsonl'}: line 2: target 'six' is not a number (numeric scorer)", err
