"""One queue per local model: the requests of every task in flight are batched together,
longest first, and each task still gets exactly its own answers, as they come."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Sequence

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from run_helpers import model_run_args, run_new  # noqa: E402
from shared_data import needs_shared_data  # noqa: E402

from proctor.config.schema import HFModelConfig  # noqa: E402
from proctor.core import Request, Response  # noqa: E402
from proctor.errors import BackendError  # noqa: E402
from proctor.models.hf import POOL_BATCHES, HFBackend  # noqa: E402

BATCH = 8


def _ll(k: int) -> Request:
    """Contexts of clearly different lengths (k decides)."""
    return Request(kind="loglikelihood", context="Question: " + "how far is the moon? " * (1 + k % 7) + "\nAnswer:",
                   continuations=(" A", " B", " the moon is far"))


def _gen(k: int) -> Request:
    return Request(kind="generate", prompt="Tell me " + "more " * (1 + k % 5), max_tokens=4)


# Ten "tasks" of three requests each, as ten subjects of three questions would send them.
CALLS = [[_ll(3 * c + i) for i in range(3)] for c in range(10)]


def _start(path: Path, **options: Any) -> HFBackend:
    backend = HFBackend(HFModelConfig(path=str(path), batch_size=BATCH, **options))
    asyncio.run(backend.start())
    return backend


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    return _start(tiny_model_dir)


class Spy:
    """Records each batch the model runs as [(queue number, length), ...]; can hold the first one."""

    def __init__(self, backend: HFBackend, monkeypatch: pytest.MonkeyPatch, hold: bool = False) -> None:
        self.batches: list[list[tuple[int, int]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        run_batch = backend._run_batch

        def spy(batch: Sequence[Any]) -> list[Response]:
            self.batches.append([(p.index, p.length) for p in batch])
            self.started.set()
            self.release.wait(30)
            return run_batch(batch)

        monkeypatch.setattr(backend, "_run_batch", spy)


async def _process_all(backend: HFBackend, calls: Sequence[Sequence[Request]]) -> list[list[Response]]:
    got: list[dict[int, Response]] = [{} for _ in calls]

    def collect(c: int) -> Any:
        def on_response(i: int, r: Response) -> None:
            assert i not in got[c], "answered twice"
            got[c][i] = r
        return on_response

    await asyncio.gather(*(backend.process(reqs, collect(c)) for c, reqs in enumerate(calls)))
    return [[g[i] for i in range(len(reqs))] for g, reqs in zip(got, calls)]


def test_concurrent_calls_share_full_batches_longest_first(
    backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [asyncio.run(_process_all(backend, [reqs]))[0] for reqs in CALLS]
    spy = Spy(backend, monkeypatch)
    together = asyncio.run(_process_all(backend, CALLS))

    n = sum(len(c) for c in CALLS)
    pool = BATCH * POOL_BATCHES  # taken from the queue at once; forward passes hold BATCH
    assert [len(b) for b in spy.batches] == [pool] * (n // pool) + ([n % pool] if n % pool else [])
    lengths = [length for batch in spy.batches for _, length in batch]
    assert lengths == sorted(lengths, reverse=True)  # one queue, sorted by length
    numbers = [number for batch in spy.batches for number, _ in batch]
    assert len(set(numbers)) == n
    # Batches hold requests of several calls; each call still gets its own answers.
    first = min(numbers)
    assert any(len({(number - first) // 3 for number, _ in batch}) > 1 for batch in spy.batches)
    for a, b in zip(together, alone):
        for x, y in zip(a, b):
            assert x.loglikelihoods == pytest.approx(y.loglikelihoods, abs=1e-5)
            assert x.continuation_lengths == y.continuation_lengths


def test_generation_and_scoring_share_the_queue_but_never_a_batch(
    backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [[_gen(k) for k in range(5)], CALLS[0], [_gen(k) for k in range(5, 8)], CALLS[1]]
    alone = [asyncio.run(_process_all(backend, [reqs]))[0] for reqs in calls]
    kinds: list[set[bool]] = []
    run_batch = backend._run_batch
    monkeypatch.setattr(backend, "_run_batch",
                        lambda batch: kinds.append({p.gen is not None for p in batch}) or run_batch(batch))
    together = asyncio.run(_process_all(backend, calls))
    assert all(len(k) == 1 for k in kinds) and len(kinds) == 2  # 8 generations in one batch, 6 scorings in one
    assert [r.text for r in together[0] + together[2]] == [r.text for r in alone[0] + alone[2]]
    for a, b in zip(together[1] + together[3], alone[1] + alone[3]):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-5)


def test_a_cancelled_call_is_dropped_from_the_queue_and_the_others_finish(
    backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(backend, monkeypatch, hold=True)

    calls = {name: CALLS[3 * k] + CALLS[3 * k + 1] + CALLS[3 * k + 2] for k, name in enumerate("abc")}
    base = backend._numbered  # a, b and c are queued as numbers base.., base + 9.., base + 18..

    async def scenario() -> tuple[list[Response], list[Response], bool]:
        got: dict[str, dict[int, Response]] = {"a": {}, "b": {}, "c": {}}
        tasks = {name: asyncio.ensure_future(backend.process(calls[name], got[name].__setitem__))
                 for name in "abc"}
        await asyncio.to_thread(spy.started.wait, 30)  # the first batch runs: the rest waits in the queue
        tasks["b"].cancel()
        await asyncio.sleep(0.01)
        spy.release.set()
        await asyncio.gather(tasks["a"], tasks["c"])
        cancelled = tasks["b"].cancelled()
        return [got["a"][i] for i in range(9)], [got["c"][i] for i in range(9)], cancelled

    a, c, cancelled = asyncio.run(scenario())
    assert cancelled and all(r.ok for r in a + c)
    ran = [number for batch in spy.batches for number, _ in batch]
    first = {number for number, _ in spy.batches[0]}
    a_and_c = set(range(base, base + 9)) | set(range(base + 18, base + 27))
    # b's requests that were not in the batch running when it was cancelled never ran.
    assert len(ran) == len(set(ran)) and set(ran) == first | a_and_c


def test_a_failing_callback_fails_its_own_call_only(backend: HFBackend) -> None:
    async def scenario() -> tuple[list[Any], dict[int, Response]]:
        good: dict[int, Response] = {}

        def broken(i: int, r: Response) -> None:
            raise OSError(28, "No space left on device")

        return await asyncio.gather(backend.process(CALLS[0], broken), backend.process(CALLS[1], good.__setitem__),
                                    return_exceptions=True), good

    (first, second), good = asyncio.run(scenario())
    assert isinstance(first, OSError) and second is None
    assert sorted(good) == [0, 1, 2] and all(r.ok for r in good.values())


def test_close_answers_waiting_calls_with_an_error(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _start(tiny_model_dir)
    spy = Spy(backend, monkeypatch, hold=True)

    async def scenario() -> list[Any]:
        calls = [asyncio.ensure_future(backend.process(reqs, lambda i, r: None)) for reqs in CALLS[:4]]
        await asyncio.to_thread(spy.started.wait, 30)
        closing = asyncio.ensure_future(backend.close())
        await asyncio.sleep(0.01)
        spy.release.set()
        await closing
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, BackendError) and "closed" in str(r) for r in results)
    # It can start again and answer.
    asyncio.run(backend.start())
    assert all(r.ok for r in asyncio.run(_process_all(backend, [CALLS[0]]))[0])
    asyncio.run(backend.close())


@needs_shared_data
def test_a_run_batches_its_subjects_together_unless_one_task_at_a_time(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six subjects of two questions at batch size 8: two batches for the whole run when the
    tasks share the model's queue; six (one per subject) with --max-num-workers 1."""
    datasets = [f"mmlu-{s}_ppl" for s in ("abstract_algebra", "anatomy", "astronomy", "business_ethics",
                                          "college_biology", "college_physics")]
    batches: list[int] = []
    run_batch = HFBackend._run_batch

    def spy(self: HFBackend, batch: Sequence[Any]) -> list[Response]:
        batches.append(len(batch))
        return run_batch(self, batch)

    monkeypatch.setattr(HFBackend, "_run_batch", spy)
    model = ["--hf-path", str(tiny_model_dir), "--batch-size", str(BATCH)]
    for workers in ([], ["--max-num-workers", "1"]):
        batches.clear()
        work = tmp_path / f"w{len(workers)}"
        run_new(model_run_args(model, work, datasets, 2, "--no-cache", "--fewshot", "0", *workers), work)
        if workers:
            assert batches == [2] * 6
        else:
            assert sum(batches) == 12 and len(batches) <= 3  # [8, 4] unless a task came late
