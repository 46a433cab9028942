"""The cyclic garbage collector is kept out of the way while requests are sent: its stalls held
every answer that arrived meanwhile (7 s of a 40 s MMLU + CMMLU run, stalls up to 0.4 s)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import read_records, run_args, run_new
from shared_data import needs_shared_data

from proctor.engine.gcquiet import YOUNG_THRESHOLD, quiet_gc


def test_quiet_gc_freezes_what_exists_and_restores_everything() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError):
        with quiet_gc():
            assert gc.get_freeze_count() > frozen
            assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
            assert gc.get_threshold()[1:] == before[1:]
            raise RuntimeError("the run failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_quiet_gc_leaves_a_disabled_collector_alone() -> None:
    gc.disable()
    try:
        before = gc.get_threshold()
        with quiet_gc():
            assert gc.get_threshold() == before and not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


@needs_shared_data
def test_requests_are_sent_with_the_collector_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTOR_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[tuple[int, int]] = []

    def answer(body: dict) -> str:  # runs in this process (the server's thread): sees its gc
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        return "A"

    before = gc.get_threshold()
    with OpenAIServer(answer, latency=0.0, model_ids=["m"]) as server:
        work = tmp_path / "outputs"
        run = run_new(run_args(server.base_url, work, ["mmlu-abstract_algebra"], 6), work)
    assert len(read_records(run, "m", "mmlu-abstract_algebra")) == 6
    assert len(seen) == 6 and all(t >= YOUNG_THRESHOLD and f > 0 for t, f in seen), seen
    assert gc.get_threshold() == before
