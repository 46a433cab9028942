"""The console summary is the headline (issue 21 §3): one row per benchmark and model, its
groups, coverage under --limit (`gsm8k (3/1,319)`), and the full tables left to summary/
(`ceval_gen --circular --limit 5` printed 711 lines before)."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import only_run
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data


def test_the_console_shows_the_headline_with_coverage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIServer(responder=lambda body: "A") as server:
        assert main(["run", "--api-base", server.base_url, "--datasets", "ceval_gen_circular", "gsm8k", "--limit", "1",
                     "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out"),
                     "--qps", "500"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) < 20, out  # 52 subjects, 4 option orders, 2 metrics each: not on the console
    gsm8k = next(line for line in lines if line.startswith("gsm8k "))
    assert gsm8k.startswith("gsm8k (1/1,319)")
    ceval = next(line for line in lines if line.startswith("ceval"))
    assert "(52/1,346)" in ceval or "52/1,346 questions" in ceval, ceval
    assert any(line.startswith("  ceval-stem") for line in lines)  # its categories, indented
    assert not any(line.lstrip().startswith("ceval-computer_network") for line in lines)
    run = only_run(tmp_path / "out")
    assert f"full tables (52 subsets, every metric) in {run / 'summary'}/summary.txt" in out
    assert "ceval-computer_network" in (run / "summary" / "summary.txt").read_text(encoding="utf-8")
