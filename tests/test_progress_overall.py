"""One overall progress line (items done/total, req/s, ETA, failures) above the per-task bars,
and in --debug at least every few seconds, so a slow, rate-limited run is never minutes of
silence (issue 21 §3: the tutorial's 0.16 QPS run printed nothing for 7 minutes)."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Record
from proctor.engine import progress
from proctor.engine.plan import make_plan
from proctor.engine.task import TaskStats


def _record(i: int, *, failed: bool = False) -> Record:
    return Record(item_id=str(i), prompt="p", output=None if failed else "A", loglikelihoods=None,
                  error="boom" if failed else None)


def test_the_overall_line_counts_rates_and_failures() -> None:
    from rich.console import Console

    plan = make_plan(["m"], [("d1", 3), ("d2", 2)], None, {"m": 0})
    out = io.StringIO()
    bars = progress.RunProgress(plan, debug=False, console=Console(file=out, force_terminal=True, width=120))
    with bars:
        for task in plan:
            bars.start(task)
        for i in range(3):
            bars.advance(plan[0], _record(i, failed=i == 2))
        bars.finish(plan[0], TaskStats(sent=3, cached=0, skipped=0, failed=1, seconds=0.1))
        bars.finish(plan[1], TaskStats(sent=0, cached=0, skipped=2, failed=0, seconds=0.0))  # resumed
        line = bars.overall.line()
    assert re.fullmatch(r"all: 5/5 items \(100%\), [0-9.]+ req/s, ETA 0:00, 1 failed", line), line
    assert "all: 5/5 items" in out.getvalue()


@needs_shared_data
def test_debug_says_the_overall_line_while_requests_are_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(progress, "OVERALL_EVERY_S", 0.3)
    with OpenAIServer(responder=lambda body: "A", latency=0.05) as server:
        started = time.monotonic()
        assert main(["run", "--api-base", server.base_url, "--datasets", "ceval-computer_network", "--limit", "4",
                     "--qps", "2", "--debug", "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out")]) == 0
        seconds = time.monotonic() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "all: " in line and "req/s" in line]
    assert seconds > 1.0 and len(lines) >= 3, err  # 4 requests at 2 per second: said on the way, not only at the end
    assert "all: 4/4 items (100%)" in lines[-1]
    assert any("ETA" in line and "/4 items" in line and "all: 4/4" not in line for line in lines)
