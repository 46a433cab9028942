"""Red team: a server (or proxy) that echoes part of the API key into a 200 reply's content or
reasoning must not put it in predictions, scores, the report or the console."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

KEY = "sk-proj-Abc123XyZ789SecretTokenValue42"


def _leaks(text: str) -> list[str]:
    return sorted({KEY[i:i + 8] for i in range(len(KEY) - 7) if KEY[i:i + 8].lower() in text.lower()})


@needs_shared_data
def test_a_key_echoed_into_a_reply_is_masked_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_KEY", KEY)

    def reply(body: dict[str, Any]) -> Reply:
        return Reply(f"The answer is A. (debug: key {KEY[10:28]})", fields=(("reasoning_content", f"seen {KEY.upper()}"),))

    out, err = io.StringIO(), io.StringIO()
    with OpenAIServer(reply, model_ids=["m"]) as server, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--api-base", server.base_url, "--api-key-env", "RT_KEY", "--datasets",
                     "ceval-computer_network", "--limit", "3", "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path)])
    assert code == 0
    everything = out.getvalue() + err.getvalue() + "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert "The answer is A." in everything  # the answer itself is kept
    assert _leaks(everything) == []


def test_an_answer_without_the_key_is_left_alone() -> None:
    from proctor.models.api_credentials import Credentials

    creds = Credentials(KEY, "$RT_KEY")
    code = 'headers = {"Authorization": "Bearer TOKEN123456"}\n'
    assert creds.redact_output(code) is code
    assert creds.redact_output(f"x {KEY[3:12]} y") == "x *** y"
