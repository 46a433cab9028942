"""Which waiting requests share a pool (hf_pooling): prompts that begin alike go together, so a
subject's few-shot examples run once per pool rather than once per pool its rows were spread over."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from proctor.models.hf_pooling import common_tokens, pick_pool, prefix_clusters, prefix_key

INSTRUCTION = list(range(1, 18))  # 17 tokens every prompt starts with (as MMLU's instruction line)


def _family(first: int, shots: int, questions: list[int]) -> list[list[int]]:
    """Prompts of one subject: the instruction, `shots` tokens of examples, then a question."""
    examples = [first + k for k in range(shots)]
    return [INSTRUCTION + examples + [9000 + first + q + k for k in range(q)] for q in questions]


def test_common_tokens_counts_whole_tokens() -> None:
    a, b = prefix_key([1, 2, 3, 4]), prefix_key([1, 2, 3, 5, 6])
    assert common_tokens(a, b, 10) == 3
    assert common_tokens(a, b, 2) == 2
    assert common_tokens(a, a, 10) == 4
    assert common_tokens(prefix_key([256]), prefix_key([257]), 5) == 0  # differ in the first byte only
    assert common_tokens(prefix_key([1 << 20]), prefix_key([2 << 20]), 5) == 0  # in a later byte


def test_subjects_are_clusters_whatever_the_order() -> None:
    anatomy = _family(100, 300, [5, 40, 12, 80, 3])
    law = _family(5000, 120, [60, 2, 25])
    # A lone prompt that sorts just before anatomy, one just after law, one sharing nothing.
    loners = [INSTRUCTION + [50] * 20, INSTRUCTION + [7000] * 30, [42, 43]]
    seqs = anatomy + law + loners
    for seed in range(3):
        order = list(range(len(seqs)))
        random.Random(seed).shuffle(order)
        got = prefix_clusters([prefix_key(seqs[i]) for i in order])
        cluster = dict(zip(order, got))
        assert len({cluster[i] for i in range(5)}) == 1  # anatomy
        assert len({cluster[i] for i in range(5, 8)}) == 1  # law
        # Sharing the instruction's 17 tokens joins neither the subjects nor a lone prompt
        # to a subject (the lone prompts may share the instruction between them).
        assert len({cluster[i] for i in (0, 5, 8)}) == 3
        assert len({cluster[i] for i in (0, 5, 9)}) == 3
        assert len({cluster[i] for i in (0, 5, 10)}) == 3


def test_a_pool_takes_whole_clusters_longest_first() -> None:
    # (name, cluster, length): longest first, as the queue hands them over.
    waiting = [("a1", 0, 900), ("b1", 1, 880), ("a2", 0, 870), ("c1", 2, 860), ("b2", 1, 850),
               ("a3", 0, 840), ("c2", 2, 830), ("d1", 3, 820)]

    def pool(rows: int) -> list[str]:
        got = pick_pool(waiting, lambda x: x[1], lambda x: x[2], lambda x: 0, lambda longest, room: rows)
        return [x[0] for x in got]

    assert pool(8) == ["a1", "a2", "a3", "b1", "b2", "c1", "c2", "d1"]  # cluster by cluster
    # a (3 rows) first, then b (2); c (2) no longer fits in the 1 row left, d (1) does.
    assert pool(6) == ["a1", "a2", "a3", "b1", "b2", "d1"]
    assert pool(2) == ["a1", "a2"]  # a cluster larger than the pool is cut, longest first
    assert pool(1) == ["a1"]


def test_a_pool_less_than_half_full_is_filled_from_the_next_clusters() -> None:
    # The last 2 rows of a large subject, then subjects of 6 rows: none fits whole in 8.
    waiting = [("a1", 0, 900), ("a2", 0, 890)] + [(f"b{k}", 1, 880 - k) for k in range(6)] \
        + [(f"c{k}", 2, 870 - k) for k in range(6)]

    def pool(rows: int) -> list[str]:
        got = pick_pool(waiting, lambda x: x[1], lambda x: x[2], lambda x: 0, lambda longest, room: rows)
        return [x[0] for x in got]

    assert pool(8) == ["a1", "a2", "b0", "b1", "b2", "b3", "b4", "b5"]  # b fits whole
    assert pool(7) == ["a1", "a2", "b0", "b1", "b2", "b3", "b4"]  # 2 of 7: filled, b cut
    assert pool(4) == ["a1", "a2"]  # half full: b is not cut for 2 rows


def test_the_pool_bound_sees_the_longest_prompt_and_the_new_tokens() -> None:
    waiting = [("a1", 0, 100, 5), ("b1", 1, 90, 50), ("b2", 1, 80, 50), ("c1", 2, 70, 5)]
    seen: list[tuple[int, int]] = []

    def rows_for(longest: int, room: int) -> int:
        seen.append((longest, room))
        return 300 // (longest + room)  # a KV bound of 300 tokens

    got = pick_pool(waiting, lambda x: x[1], lambda x: x[2], lambda x: x[3], rows_for)
    # a: 1 row of 105; with b: 3 rows of 150 > 300: b is left; c fits (2 rows of 105).
    assert [x[0] for x in got] == ["a1", "c1"]
    assert (100, 50) in seen


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> Any:
    pytest.importorskip("torch")
    from proctor.config.schema import HFModelConfig
    from proctor.models.hf import HFBackend

    b = HFBackend(HFModelConfig(path=str(tiny_model_dir), batch_size=2))
    asyncio.run(b.start())
    return b


def _subject_requests(subject: str, questions: list[str]) -> list[Any]:
    from proctor.core import Message, Request

    shots: list[Message] = []
    for k in range(3):
        shots += [Message("user", f"The following are questions about {subject}.\n\n{subject} question {k}?\n"
                                  "A. one\nB. two\nC. three\nD. four\nAnswer:"), Message("assistant", "B")]
    return [Request(kind="generate", messages=(*shots, Message("user", q + "\nAnswer:")), max_tokens=3)
            for q in questions]


def test_the_queue_keeps_each_subject_in_one_pool(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two subjects sent as two calls, as two tasks of `proctor run` are; their question
    # lengths interleave, so the 8 longest prompts (a pool at batch size 2) hold rows of both.
    anatomy = _subject_requests("anatomy", [("bone " * k).strip() + "?" for k in (30, 12, 24, 6, 18)])
    physics = _subject_requests("physics", [("atom " * k).strip() + "?" for k in (27, 9, 21, 3, 15)])
    pools: list[list[int]] = []
    real = type(backend)._run_generate

    def recording(self: Any, batch: Any) -> Any:
        pools.append([p.index for p in batch])
        return real(self, batch)

    monkeypatch.setattr(type(backend), "_run_generate", recording)
    answers: dict[int, Any] = {}

    async def both() -> None:
        await asyncio.gather(
            backend.process(anatomy, lambda i, r: answers.__setitem__(i, r)),
            backend.process(physics, lambda i, r: answers.__setitem__(5 + i, r)))

    asyncio.run(both())
    # Queue numbers: anatomy's requests were queued first (0-4), physics' next (5-9).
    assert sorted(sorted(p) for p in pools) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], pools
    # Whoever shared a pool, every answer is the one the prompt gets alone.
    alone = [backend.run_requests([r])[0] for r in anatomy + physics]
    assert [answers[i].text for i in range(10)] == [a.text for a in alone]
    assert all(a.ok for a in alone)
