"""HF log-likelihood scoring: the one-pass paths (letters from the prefix logits, packed
multi-token suffixes) against one full forward pass per continuation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from proctor.config.schema import HFModelConfig  # noqa: E402
from proctor.core import Request, Response  # noqa: E402
from proctor.models import hf_loglikelihood as hfll  # noqa: E402
from proctor.models.hf import HFBackend  # noqa: E402

LETTERS = (" A", " B", " C", " D")

LETTER_REQUESTS = [
    Request(kind="loglikelihood", context=ctx, continuations=LETTERS)
    for ctx in (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "Which bone is longest?\nA. femur\nB. tibia\nC. ulna\nD. radius\nAnswer:",
        "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
        "路由器工作在哪一层？\nA. 物理层\nB. 数据链路层\nC. 网络层\nD. 传输层\n答案：",
        "Q: 2+2?\nAnswer:",
    )
]

OPTION_REQUESTS = [
    Request(kind="loglikelihood", context=LETTER_REQUESTS[0].context,
            continuations=(" femur", " tibia", " the ulna, a bone of the forearm", " radius")),
    Request(kind="loglikelihood", context=LETTER_REQUESTS[1].context,
            continuations=(" 物理层", " 数据链路层", " 网络层龘靐齉", " 传输层")),
    Request(kind="loglikelihood", context="Q: 2+2?\nAnswer:",
            continuations=(" four", " 4", " five or maybe six", " 22")),
]

# One- and multi-token continuations in one request, a straddling token, an empty
# continuation, an empty context, and continuations sharing no whole-token prefix.
MIXED_REQUESTS = [
    Request(kind="loglikelihood", context="Answer:",
            continuations=(" A", " Paris is the capital of France", " B", "")),
    Request(kind="loglikelihood", context="Answer: ", continuations=("A", "B is right", "C")),
    Request(kind="loglikelihood", context="The quick brown fox jumps over the",
            continuations=(" lazy dog", "re", " fence")),
    Request(kind="loglikelihood", context="", continuations=("Hello world", "Hi")),
    Request(kind="loglikelihood", context="x", continuations=(" y",)),
]

ALL = LETTER_REQUESTS + OPTION_REQUESTS + MIXED_REQUESTS


def start(path: Path, **options: Any) -> HFBackend:
    backend = HFBackend(HFModelConfig(path=str(path), **options))
    asyncio.run(backend.start())
    return backend


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path) -> dict[int, HFBackend]:
    return {size: start(tiny_model_dir, batch_size=size) for size in (1, 3, 16)}


def full_pass(model: Any, tok: Any, context: str, continuation: str) -> tuple[float, int]:
    """The continuation rule on (start, end) spans + one unbatched full forward pass."""
    enc = tok(context + continuation, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids, n = list(enc["input_ids"]), len(context)
    scored = [
        j for j, ((a, b), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"]))
        if not special and (a >= n or a < n < b)
    ]
    if scored and scored[0] == 0:  # nothing before the continuation: condition on BOS
        ids = [tok.bos_token_id] + ids
        scored = [j + 1 for j in scored]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logprobs[j - 1, ids[j]]) for j in scored), len(scored)


def check_against_full_passes(backend: HFBackend, requests: Sequence[Request],
                              answers: Sequence[Response]) -> None:
    lm = backend._lm
    assert lm is not None
    for request, answer in zip(requests, answers):
        assert answer.ok and answer.loglikelihoods is not None, answer.error
        assert len(answer.loglikelihoods) == len(request.continuations)
        for c, ll, n in zip(request.continuations, answer.loglikelihoods,
                            answer.continuation_lengths or ()):
            ref_ll, ref_n = full_pass(lm.model, lm.tokenizer, request.context or "", c)
            assert n == ref_n, (request.context, c)
            assert ll == pytest.approx(ref_ll, abs=1e-4), (request.context, c)


@pytest.mark.parametrize("requests", [LETTER_REQUESTS, OPTION_REQUESTS, MIXED_REQUESTS, ALL],
                         ids=["letters", "options", "mixed", "all"])
@pytest.mark.parametrize("size", [1, 3, 16])
def test_scores_match_one_full_pass_per_continuation(backends: dict[int, HFBackend],
                                                     requests: list[Request], size: int) -> None:
    backend = backends[size]
    check_against_full_passes(backend, requests, backend.run_requests(requests))


def test_scores_do_not_depend_on_batch_size(backends: dict[int, HFBackend]) -> None:
    requests = ALL * 2
    results = {size: backend.run_requests(requests) for size, backend in backends.items()}
    for size in (3, 16):
        for a, b in zip(results[1], results[size]):
            assert a.continuation_lengths == b.continuation_lengths
            assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-5)


def test_letters_take_one_pass_without_a_cache(backends: dict[int, HFBackend],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real = hfll.forward

    def counting(model: Any, ids: Any, mask: Any, positions: Any, cache: Any,
                 logits_to_keep: int, use_cache: bool = True) -> Any:
        calls.append({"rows": ids.shape[0], "keep": logits_to_keep, "use_cache": use_cache,
                      "mask_dims": mask.dim()})
        return real(model, ids, mask, positions, cache, logits_to_keep, use_cache)

    monkeypatch.setattr(hfll, "forward", counting)
    backend = backends[16]
    backend.run_requests(LETTER_REQUESTS)
    assert calls == [{"rows": 3, "keep": 1, "use_cache": False, "mask_dims": 2}]
    calls.clear()
    backend.run_requests(OPTION_REQUESTS)  # packed: still one pass, one row per request
    assert len(calls) == 1 and calls[0]["rows"] == 3 and calls[0]["use_cache"] is False
    assert calls[0]["mask_dims"] == 4


def jobs_of(backend: HFBackend, requests: Sequence[Request]) -> list[Any]:
    lm = backend._lm
    assert lm is not None
    jobs = []
    for index, r in enumerate(requests):
        scored = [hfll.tokenize_scored(lm.tokenizer, r.context or "", c, 2048) for c in r.continuations]
        jobs += hfll.plan_jobs(index, scored)
    return jobs


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_packed_and_cached_paths_agree(backends: dict[int, HFBackend], kind: str) -> None:
    lm = backends[1]._lm
    assert lm is not None
    jobs = jobs_of(backends[1], ALL)
    pad = lm.tokenizer.pad_token_id
    packed = hfll.score_jobs_packed(lm.model, pad, lm.device, jobs, mask_kind=kind)
    cached = hfll.score_jobs_cached(lm.model, pad, lm.device, jobs)
    for a, b in zip(packed, cached):
        assert a == pytest.approx(b, abs=1e-4)


def test_models_without_custom_masks_use_the_cached_path(tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    backend = start(tiny_model_dir, batch_size=3)
    monkeypatch.setattr(hfll, "_mask_kind", lambda model: None)
    used: list[str] = []
    real = hfll.score_jobs_cached

    def cached(*args: Any, **kwargs: Any) -> Any:
        used.append("cached")
        return real(*args, **kwargs)

    monkeypatch.setattr(hfll, "score_jobs_cached", cached)
    answers = backend.run_requests(ALL)
    assert used  # multi-token batches went the two-pass way
    check_against_full_passes(backend, ALL, answers)
    lm = backend._lm
    assert lm is not None and lm.model._proctor_packing_ok is False


# 3-shot prompts of two subjects (a prefix each, far longer than SHARED_PREFIX_MIN) and a loner.
SHOTS = {subject: "".join(f"Q: {subject} question {k}?\nA. one\nB. two\nC. three\nD. four\nAnswer: B\n\n"
                          for k in range(3)) for subject in ("anatomy", "天文学")}
FEWSHOT_REQUESTS = [
    Request(kind="loglikelihood", context=SHOTS[subject] + f"Q: {question}\nA. x\nB. y\nC. z\nD. w\nAnswer:",
            continuations=LETTERS)
    for subject, question in [("anatomy", "which bone?"), ("天文学", "哪颗行星最大？"),
                              ("anatomy", "which muscle is the strongest of all?"), ("anatomy", "a?"),
                              ("天文学", "月亮？")]
] + [LETTER_REQUESTS[2]]


@pytest.mark.parametrize("size", [1, 3, 16])
def test_shared_few_shot_prefixes_run_once_and_score_the_same(
        backends: dict[int, HFBackend], size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    shared_calls: list[list[Any]] = []
    real = hfll.score_jobs_shared

    def counting(model: Any, pad_id: int, device: Any, jobs: Any, prefill_rows: int) -> Any:
        shared_calls.append([job.key for job in jobs])
        return real(model, pad_id, device, jobs, prefill_rows)

    monkeypatch.setattr(hfll, "score_jobs_shared", counting)
    backend = backends[size]
    answers = backend.run_requests(FEWSHOT_REQUESTS)
    check_against_full_passes(backend, FEWSHOT_REQUESTS, answers)
    # A pool (4 batches of `size` requests) holds whole subjects: a subject's rows are never
    # spread over pools that would each run its examples again (at size 1: 2 + 3 rows).
    subjects = [{i for i, r in enumerate(FEWSHOT_REQUESTS) if (r.context or "").startswith(SHOTS[s])}
                for s in SHOTS]
    assert all(any(rows <= set(keys) for keys in shared_calls) for rows in subjects), shared_calls
    assert [len(keys) for keys in shared_calls] == ([3, 3] if size == 1 else [6])
