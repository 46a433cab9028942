"""Greedy generation in the decode pool (hf_generate) against model.generate, row by row, on the
real tiny model: same tokens whatever the prefill batches, the pool and rows leaving it early."""

from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from proctor.config.schema import HFModelConfig  # noqa: E402
from proctor.core import Request  # noqa: E402
from proctor.models import hf_generate, hf_prefill  # noqa: E402
from proctor.models.hf import HFBackend  # noqa: E402
from proctor.models.hf_generate import GenInput, GenOutput, generate_batch  # noqa: E402

TEXTS = [
    "Question: what is the capital of France?",
    "问题：中国的首都是哪一个城市？龘靐齉" * 3,
    "The following are multiple choice questions (with answers) about physics.\n\n" * 4,
    "x",
    "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。" * 2,
    "Answer: ",
    "Q: " + "two plus two is four. " * 9,
    "A. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path) -> Any:
    backend = HFBackend(HFModelConfig(path=str(tiny_model_dir), batch_size=4))
    asyncio.run(backend.start())
    assert backend._lm is not None
    return backend._lm


def _inputs(lm: Any, max_tokens: list[int], stops: list[tuple[str, ...]] | None = None) -> list[GenInput]:
    ids = [tuple(lm.tokenizer(t)["input_ids"]) for t in TEXTS]
    ids.sort(key=len, reverse=True)  # as the backend hands them over: longest first
    stops = stops or [()] * len(ids)
    return [GenInput(i, n, s) for i, n, s in zip(ids, max_tokens, stops)]


def _one_by_one(lm: Any, inputs: list[GenInput], **kwargs: Any) -> list[GenOutput]:
    """model.generate, each prompt alone: the reference the pool must equal."""
    hf_generate._poolable[lm.model] = False
    try:
        return [generate_batch(lm.model, lm.tokenizer, lm.device, [x], **kwargs)[0] for x in inputs]
    finally:
        del hf_generate._poolable[lm.model]


def test_pool_equals_model_generate_row_by_row(lm: Any) -> None:
    # Different max_tokens, so that rows leave the pool at different steps (and it shrinks).
    inputs = _inputs(lm, [1, 9, 2, 12, 3, 7, 16, 5])
    expected = _one_by_one(lm, inputs)
    for prefill_rows in (1, 3, 8):
        got = generate_batch(lm.model, lm.tokenizer, lm.device, inputs, prefill_rows=prefill_rows)
        assert hf_generate._poolable[lm.model] is True  # the pool ran
        assert got == expected, prefill_rows
    assert [o.completion_tokens for o in expected] == [1, 9, 2, 12, 3, 7, 16, 5]


def test_stop_strings_end_rows_in_the_pool(lm: Any) -> None:
    full = generate_batch(lm.model, lm.tokenizer, lm.device, _inputs(lm, [24] * len(TEXTS)),
                          prefill_rows=4)
    # For each row a stop string that first occurs inside its output (or none).
    stops = []
    for out in full:
        text = out.text
        stop = next((text[k:k + 2] for k in range(3, len(text) - 2)
                     if text[k:k + 2].strip() and text.find(text[k:k + 2]) == k), "")
        stops.append((stop,) if stop else ())
    inputs = _inputs(lm, [24] * len(TEXTS), stops)
    got = generate_batch(lm.model, lm.tokenizer, lm.device, inputs, prefill_rows=4)
    assert got == _one_by_one(lm, inputs)
    cut = [(o, s) for o, s in zip(got, stops) if s]
    assert len(cut) >= 4
    for (out, (stop,)), whole in zip(cut, [f for f, s in zip(full, stops) if s]):
        assert out.text == whole.text[: whole.text.find(stop)]
        assert out.completion_tokens < 24 and out.finish_reason == "stop"


def test_settings_only_model_generate_applies_bypass_the_pool(lm: Any) -> None:
    inputs = _inputs(lm, [10] * len(TEXTS))
    kwargs = {"generation_kwargs": {"repetition_penalty": 1.5}}
    config = hf_generate._generation_config(lm.model, 10, 0.0, lm.tokenizer.pad_token_id, {2},
                                            kwargs["generation_kwargs"])
    assert not hf_generate._plain_greedy(config)
    got = generate_batch(lm.model, lm.tokenizer, lm.device, inputs, prefill_rows=8, **kwargs)
    assert got == _one_by_one(lm, inputs, **kwargs)
    assert got != generate_batch(lm.model, lm.tokenizer, lm.device, inputs, prefill_rows=8)


def test_only_full_attention_models_are_pooled(lm: Any) -> None:
    model = copy.copy(lm.model)
    assert hf_prefill.not_full_attention(model) is None
    for changes, why in (({"sliding_window": 16}, "sliding attention window"),
                         ({"layer_types": ["sliding_attention", "full_attention"]}, "layer types")):
        model.config = copy.deepcopy(lm.model.config)
        for key, value in changes.items():
            setattr(model.config, key, value)
        assert why in (hf_prefill.not_full_attention(model) or "")
    model.config = copy.deepcopy(lm.model.config)
    model.config.sliding_window, model.config.use_sliding_window = 16, False  # Qwen2's off switch
    assert hf_prefill.not_full_attention(model) is None


def test_a_pool_that_disagrees_with_model_generate_is_not_used(lm: Any, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    model = copy.copy(lm.model)  # a model the check has not seen
    real = hf_generate._generate_pooled

    def wrong(*args: Any, **kwargs: Any) -> list[GenOutput]:
        return [replace(o, text=o.text + "!") for o in real(*args, **kwargs)]

    monkeypatch.setattr(hf_generate, "_generate_pooled", wrong)
    inputs = _inputs(lm, [6] * len(TEXTS))
    got = generate_batch(model, lm.tokenizer, lm.device, inputs, prefill_rows=4)
    assert hf_generate._poolable[model] is False
    assert got == _one_by_one(lm, inputs)


def test_prefill_batches_follow_the_lengths() -> None:
    chunks = hf_prefill.prefill_chunks
    assert chunks([100] * 10, 4) == [(0, 4), (4, 8), (8, 10)]
    # A long prompt gets its own batch once it holds 512 tokens; short ones stay together.
    assert chunks([600, 300, 290, 120, 118, 110, 100], 8) == [(0, 1), (1, 3), (3, 7)]
    assert chunks([60, 40, 30], 8) == [(0, 3)]  # too few tokens to be worth a batch of their own
    assert chunks([], 8) == []


def test_decode_pools_hold_at_most_batch_size_times_max_seq_len_tokens(tiny_model_dir: Path) -> None:
    backend = HFBackend(HFModelConfig(path=str(tiny_model_dir), batch_size=2, max_seq_len=64))
    asyncio.run(backend.start())
    requests = [Request(kind="generate", prompt="word " * 28, max_tokens=10) for _ in range(8)]
    prepared = backend._prepare_all(requests)
    per_row = max(len(p.gen.ids) for p in prepared) + 10
    assert 32 < per_row <= 64
    pools = backend._pools(prepared)
    assert [len(p) for p in pools] == [2] * 4  # 2 x 64 tokens hold 2 rows of this size
    assert [a.completion_tokens for a in backend.run_requests(requests)] == [10] * 8


def test_shared_prefixes_run_once_and_change_nothing(lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two 3-shot prompt families (one prefix each) and rows that share nothing.
    shots = {name: "".join(f"Q: {name} question {k} about {name}?\nA: answer {k}.\n\n" for k in range(3))
             for name in ("anatomy", "天文学")}
    texts = [shots["anatomy"] + f"Q: what is bone number {k}?\nA:" for k in range(5)]
    texts += [shots["天文学"] + f"Q: 第{k}颗行星是哪一颗？\nA:" for k in range(3)]
    texts += ["x", "Answer: "]
    # In no particular order: the pool reorders rows by what is left to prefill.
    ids = [tuple(lm.tokenizer(t)["input_ids"]) for t in texts]
    random.Random(0).shuffle(ids)
    inputs = [GenInput(i, n, ()) for i, n in zip(ids, [3, 8, 5, 12, 1, 7, 9, 4, 6, 10])]
    shared = hf_prefill.shared_prefixes(ids)
    lengths = sorted({p for _, p in shared})
    assert lengths[0] == 0 and len(lengths) == 3  # no prefix for the loners, one per family
    assert all(p > 30 for p in lengths[1:])

    seen: list[int] = []
    real = hf_prefill.forward

    def counting(model: Any, ids: Any, *args: Any, **kwargs: Any) -> Any:
        if ids.shape[1] > 1:
            seen.append(int(ids.shape[0] * ids.shape[1]))
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(hf_prefill, "forward", counting)
    got = generate_batch(lm.model, lm.tokenizer, lm.device, inputs, prefill_rows=4)
    assert hf_generate._poolable[lm.model] is True
    monkeypatch.setattr(hf_prefill, "forward", real)
    assert got == _one_by_one(lm, inputs)
    # Each prefix ran once: far fewer prompt tokens went through the model than the prompts hold.
    saved = sum(p for _, p in shared) - sum(lengths[1:])
    assert sum(seen) < sum(map(len, ids)) - saved // 2


def test_pool_groups_keep_shared_layouts_narrow() -> None:
    # Two families (prefixes of 40 and 12 tokens) and two loners, one of them long.
    a = [tuple(range(40)) + (100 + k,) * (5 + k) for k in range(3)]
    b = [tuple(range(500, 512)) + (200 + k,) * 30 for k in range(2)]
    loners = [tuple(range(900, 990)), (7, 8, 9)]
    seqs = a + b + loners
    groups = hf_prefill.pool_groups(seqs)
    assert sorted(i for g in groups for i in g) == list(range(len(seqs)))
    for group in groups:
        sub = [seqs[i] for i in group]
        shared = hf_prefill.shared_prefixes(sub)
        width = max(p for _, p in shared) + max(len(x) - p for x, (_, p) in zip(sub, shared))
        assert width <= hf_prefill.MAX_WIDENING * max(map(len, sub))
    # Family a (prefix 40, rest <= 8) and family b (prefix 12, rest 30): 40 + 30 > 1.25 x 48;
    # the loners fit with family b (12 + 90 <= 1.25 x 90).
    assert groups == [[0, 1, 2], [3, 4, 5, 6]]
    # Zero-shot prompts that share only an instruction line stay one group (one decode pool).
    head = tuple(range(12))
    assert hf_prefill.pool_groups([head + (k,) * (60 + k) for k in range(6)] + loners) == [list(range(8))]


@pytest.mark.parametrize("setting, plain", [
    ({"repetition_penalty": 1.0}, True), ({"no_repeat_ngram_size": 0}, True),
    ({"no_repeat_ngram_size": 1}, False), ({"min_new_tokens": 1}, False),
    ({"min_new_tokens": 0}, True), ({"bad_words_ids": [[5]]}, False), ({"suppress_tokens": [3]}, False),
])
def test_only_settings_at_their_off_value_keep_the_pool(lm: Any, setting: dict[str, Any], plain: bool) -> None:
    config = hf_generate._generation_config(lm.model, 4, 0.0, lm.tokenizer.pad_token_id, {2}, setting)
    assert hf_generate._plain_greedy(config) is plain
