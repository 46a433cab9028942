"""HFBackend on a real (tiny, locally built) transformers model: generation, scoring, errors."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from proctor.config.schema import HFModelConfig  # noqa: E402
from proctor.core import Message, Request, Response  # noqa: E402
from proctor.errors import BackendError, MissingExtraError  # noqa: E402
from proctor.models.base import Backend  # noqa: E402
from proctor.models.hf import HFBackend  # noqa: E402
from proctor.models.hf_spans import continuation_logprob, continuation_start  # noqa: E402
from proctor.tiny_model import build_tiny_model  # noqa: E402

# Prompts of very different lengths, English and Chinese (with characters the
# tokenizer never saw, which only exist as UTF-8 byte tokens).
PROMPTS = [
    ("Question: " + "what is the capital of France? " * (k % 5 + 1)) if k % 3 else
    ("问题：" + "中国的首都是哪一个城市？龘靐齉" * (k % 4 + 1))
    for k in range(20)
]

LL_REQUESTS = [
    Request(kind="loglikelihood", context="Question: What is the capital of France?\nAnswer:",
            continuations=(" A", " B", " Paris", " Paris is the capital of France")),
    Request(kind="loglikelihood", context="问题：中国的首都是哪一个城市？\n答案：",
            continuations=("A", "B", "北京", "龘靐齉")),
    # Trailing space in the context: " A" straddles the boundary and counts.
    Request(kind="loglikelihood", context="Answer: ", continuations=("A", "B is right")),
    Request(kind="loglikelihood", context="The quick brown fox jumps over the",
            continuations=(" lazy dog", "re", "")),
    Request(kind="loglikelihood", context="", continuations=("Hello world",)),
    Request(kind="loglikelihood", context="x", continuations=(" y",)),
]


def start(path: Path, **options: Any) -> HFBackend:
    backend = HFBackend(HFModelConfig(path=str(path), **options))
    asyncio.run(backend.start())
    return backend


def run(backend: HFBackend, requests: Sequence[Request]) -> list[Response]:
    answers: dict[int, Response] = {}

    def on_response(i: int, response: Response) -> None:
        assert i not in answers, f"request {i} answered twice"
        answers[i] = response

    asyncio.run(backend.process(requests, on_response))
    assert sorted(answers) == list(range(len(requests)))
    return [answers[i] for i in range(len(requests))]


def greedy_reference(model: Any, ids: Sequence[int], n: int, eos: int) -> list[int]:
    """Greedy decoding the slow, obvious way: one full forward pass per new token."""
    ids, out = list(ids), []
    with torch.inference_mode():
        for _ in range(n):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
            ids.append(token)
    return out


def reference_loglikelihood(model: Any, tok: Any, context: str, continuation: str
                            ) -> tuple[float, int]:
    """The contract's rule written directly on (start, end) spans + one full forward pass."""
    enc = tok(context + continuation, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids, L = enc["input_ids"], len(context)
    scored = [
        j for j, ((a, b), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"]))
        if not special and (a >= L or a < L < b)
    ]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
    return sum(float(logprobs[j - 1, ids[j]]) for j in scored), len(scored)


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path) -> dict[int, HFBackend]:
    """The chat model at batch sizes 1, 4 and 16."""
    return {size: start(tiny_model_dir, batch_size=size) for size in (1, 4, 16)}


@pytest.fixture(scope="module")
def base_model_dir(tiny_model_dir: Path) -> Path:
    """Same recipe without a chat template: a base model."""
    return build_tiny_model(tiny_model_dir.parent / "tiny-base", chat_template=False)


def test_backend_protocol_and_identity(backends: dict[int, HFBackend], tiny_model_dir: Path,
                                       base_model_dir: Path) -> None:
    backend = backends[4]
    assert isinstance(backend, Backend)
    assert backend.chat is True
    assert backend.name == "tiny-chat"
    kind, path, digest, dtype = backend.identity.split("|")
    assert (kind, path, dtype) == ("hf", str(tiny_model_dir.resolve()), "float32")
    assert len(digest) == 16
    assert start(tiny_model_dir).identity == backend.identity  # stable across loads
    assert start(base_model_dir).identity != backend.identity
    assert start(tiny_model_dir, batch_size="auto").batch_size == 8  # CPU


def test_identity_changes_when_weights_change(tmp_path: Path) -> None:
    first = start(build_tiny_model(tmp_path / "m", seed=0)).identity
    second = start(build_tiny_model(tmp_path / "m", seed=1)).identity
    assert first != second


def test_generation_matches_plain_greedy_decoding(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    lm = backend._lm
    assert lm is not None
    requests = [Request(kind="generate", prompt=p, max_tokens=7) for p in PROMPTS[:6]]
    for request, answer in zip(requests, run(backend, requests)):
        assert answer.ok and isinstance(answer.text, str)
        ids = lm.tokenizer(request.prompt)["input_ids"]
        expected = greedy_reference(lm.model, ids, 7, lm.tokenizer.eos_token_id)
        assert answer.text == lm.tokenizer.decode(expected, skip_special_tokens=True)
        assert answer.prompt_tokens == len(ids)
        assert answer.completion_tokens == len(expected) <= 7


def test_stop_strings_cut_the_text_and_end_generation_early(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    prompt = PROMPTS[1]
    full = run(backend, [Request(kind="generate", prompt=prompt, max_tokens=40)])[0]
    assert full.completion_tokens == 40 and full.text is not None
    # A stop string that first occurs well inside the output.
    stop = next(full.text[k:k + 2] for k in range(8, len(full.text) - 2)
                if full.text[k:k + 2].strip() and full.text.find(full.text[k:k + 2]) == k)
    cut = run(backend, [Request(kind="generate", prompt=prompt, max_tokens=40,
                                stop=("never-appears", stop))])[0]
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.completion_tokens is not None and cut.completion_tokens < 40


def test_max_tokens_per_request_within_one_batch(backends: dict[int, HFBackend]) -> None:
    requests = [Request(kind="generate", prompt=PROMPTS[2], max_tokens=n) for n in (0, 1, 3, 12)]
    answers = run(backends[16], requests)
    assert [a.completion_tokens for a in answers] == [0, 1, 3, 12]
    assert answers[0].text == ""
    long = answers[3].text
    assert long is not None and all(long.startswith(a.text or "") for a in answers[:3])


def test_greedy_generation_is_identical_at_batch_sizes_1_4_16(backends: dict[int, HFBackend]) -> None:
    requests = [Request(kind="generate", prompt=p, max_tokens=12, stop=("\n",)) for p in PROMPTS]
    texts = {size: [a.text for a in run(b, requests)] for size, b in backends.items()}
    assert all(t is not None for t in texts[1])
    assert texts[1] == texts[4] == texts[16]


def test_chat_template_only_for_chat_models(tiny_model_dir: Path, base_model_dir: Path,
                                            backends: dict[int, HFBackend]) -> None:
    messages = (Message("system", "Answer briefly."), Message("user", "中国的首都是哪里？"))
    request = Request(kind="generate", messages=messages, max_tokens=5)
    chat = backends[4]
    base = start(base_model_dir)
    chat_off = start(tiny_model_dir, chat=False)
    assert (chat.chat, base.chat, chat_off.chat) == (True, False, False)

    tok = chat._lm.tokenizer  # type: ignore[union-attr]
    rendered = tok.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        tokenize=False, add_generation_prompt=True,
    )
    assert rendered.startswith("<s><|system|>") and rendered.endswith("<|assistant|>\n")
    chat_ids = tok(rendered, add_special_tokens=False)["input_ids"]
    plain_ids = tok("Answer briefly.\n\n中国的首都是哪里？")["input_ids"]
    for backend, ids in ((chat, chat_ids), (base, plain_ids), (chat_off, plain_ids)):
        answer = run(backend, [request])[0]
        lm = backend._lm
        assert answer.prompt_tokens == len(ids)
        expected = greedy_reference(lm.model, ids, 5, tok.eos_token_id)
        assert answer.text == tok.decode(expected, skip_special_tokens=True)
    # A plain prompt is sent as is, even to a chat model.
    prompt_answer = run(chat, [Request(kind="generate", prompt="Hello", max_tokens=1)])[0]
    assert prompt_answer.prompt_tokens == len(tok("Hello")["input_ids"])


def test_loglikelihood_equals_independent_full_passes(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    lm = backend._lm
    for request, answer in zip(LL_REQUESTS, run(backend, LL_REQUESTS)):
        assert answer.ok and answer.loglikelihoods is not None
        assert len(answer.loglikelihoods) == len(request.continuations)
        for c, ll, n in zip(request.continuations, answer.loglikelihoods,
                            answer.continuation_lengths or ()):
            ref_ll, ref_n = reference_loglikelihood(lm.model, lm.tokenizer, request.context or "", c)
            assert n == ref_n, (request.context, c)
            assert ll == pytest.approx(ref_ll, abs=1e-4), (request.context, c)
    straddle = run(backend, [LL_REQUESTS[2]])[0]
    assert straddle.continuation_lengths is not None and straddle.continuation_lengths[0] == 1
    empty = run(backend, [LL_REQUESTS[3]])[0]
    assert empty.loglikelihoods is not None and empty.loglikelihoods[2] == 0.0


def test_loglikelihood_does_not_depend_on_batch_size(backends: dict[int, HFBackend]) -> None:
    requests = LL_REQUESTS * 3
    results = {size: run(b, requests) for size, b in backends.items()}
    for size in (4, 16):
        for a, b in zip(results[1], results[size]):
            assert a.continuation_lengths == b.continuation_lengths
            assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-5)


def test_prompt_logprobs_agree_with_loglikelihood(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    texts = [(r.context or "", c) for r in LL_REQUESTS for c in r.continuations]
    scored = asyncio.run(backend.prompt_logprobs([ctx + c for ctx, c in texts]))
    direct = [(ll, n) for a in run(backend, LL_REQUESTS)
              for ll, n in zip(a.loglikelihoods or (), a.continuation_lengths or ())]
    for (ctx, c), pl, (ll, n) in zip(texts, scored, direct):
        assert pl.logprobs[0] is None and pl.tokens[0] == "<s>"
        assert len(pl.tokens) == len(pl.offsets) == len(pl.logprobs)
        assert list(pl.offsets) == sorted(pl.offsets)
        if (ctx + c).isascii():
            assert "".join(pl.tokens[1:]) == ctx + c
        total, count = continuation_logprob(pl.offsets, pl.logprobs, len(ctx), len(ctx + c))
        assert count == n, (ctx, c)
        assert total == pytest.approx(ll, abs=1e-4), (ctx, c)


def test_chinese_text_encodes_through_byte_tokens(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    tok = backend._lm.tokenizer  # type: ignore[union-attr]
    rare = "龘靐齉"  # not in the tokenizer's training text: only UTF-8 byte pieces
    ids = tok(rare, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 * len(rare) and tok.decode(ids) == rare
    assert all("\ufffd" in tok.decode([i]) for i in ids[:1])  # a lone byte is no character
    text = "问题：中国的首都是哪一个城市？" + rare
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    answer = run(backend, [Request(kind="loglikelihood", context="答案：", continuations=(rare,))])[0]
    assert answer.continuation_lengths == (len(ids),)
    assert answer.loglikelihoods is not None and -1e4 < answer.loglikelihoods[0] < 0
    (pl,) = asyncio.run(backend.prompt_logprobs([rare]))
    # Byte pieces of one character all start where the character starts.
    assert pl.offsets[1:] == tuple(a for a, _ in tok(rare, add_special_tokens=False,
                                                     return_offsets_mapping=True)["offset_mapping"])
    assert set(pl.offsets) == {0, 1, 2} and len(pl.offsets) == len(ids) + 1
    gen = run(backend, [Request(kind="generate", prompt=text, max_tokens=6)])[0]
    assert gen.ok and gen.prompt_tokens == len(tok(text)["input_ids"])


def test_truncation_keeps_the_end_and_warns_once(tiny_model_dir: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    backend = start(tiny_model_dir, max_seq_len=24)
    lm = backend._lm
    long_prompts = [PROMPTS[4] * 3, PROMPTS[3] * 3]
    with caplog.at_level(logging.WARNING, logger="proctor.models.hf"):
        answers = run(backend, [Request(kind="generate", prompt=p, max_tokens=8)
                                for p in long_prompts])
        context = "Question: " + "what is the capital of France? " * 10 + "Answer:"
        scored = run(backend, [Request(kind="loglikelihood", context=context,
                                       continuations=(" A", " B"))])[0]
    warnings = [r for r in caplog.records if "truncated from the left" in r.getMessage()]
    assert len(warnings) == 1
    for prompt, answer in zip(long_prompts, answers):
        ids = lm.tokenizer(prompt)["input_ids"][-16:]  # 24 - max_tokens 8
        assert answer.prompt_tokens == 16
        expected = greedy_reference(lm.model, ids, 8, lm.tokenizer.eos_token_id)
        assert answer.text == lm.tokenizer.decode(expected, skip_special_tokens=True)
    for c, ll in zip((" A", " B"), scored.loglikelihoods or ()):
        ids = lm.tokenizer(context + c)["input_ids"][-24:]
        with torch.inference_mode():
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -2]
        assert ll == pytest.approx(float(torch.log_softmax(logits, -1)[ids[-1]]), abs=1e-4)
        # The echo path truncates the same way, so HTTP scoring still agrees.
        (pl,) = asyncio.run(backend.prompt_logprobs([context + c]))
        assert len(pl.tokens) == 24 and pl.logprobs[0] is None
        assert pl.logprobs[-1] == pytest.approx(ll, abs=1e-4)


def test_concurrent_process_calls_keep_the_event_loop_free(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    gen = [Request(kind="generate", prompt=p, max_tokens=10) for p in PROMPTS[:8]]
    expected_gen = [a.text for a in run(backend, gen)]
    expected_ll = [a.loglikelihoods for a in run(backend, LL_REQUESTS)]

    async def scenario() -> tuple[list[Any], list[Any], int]:
        got_gen: dict[int, Any] = {}
        got_ll: dict[int, Any] = {}
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        tick_task = asyncio.create_task(ticker())
        await asyncio.gather(
            backend.process(gen, lambda i, r: got_gen.__setitem__(i, r.text)),
            backend.process(LL_REQUESTS, lambda i, r: got_ll.__setitem__(i, r.loglikelihoods)),
        )
        done.set()
        await tick_task
        return ([got_gen[i] for i in range(len(gen))],
                [got_ll[i] for i in range(len(LL_REQUESTS))], ticks)

    texts, lls, ticks = asyncio.run(scenario())
    assert texts == expected_gen
    for a, b in zip(lls, expected_ll):
        assert a == pytest.approx(b, abs=1e-5)
    assert ticks >= 5  # the loop kept running while batches ran in the worker thread


def test_a_bad_request_fails_alone(backends: dict[int, HFBackend]) -> None:
    requests = [
        Request(kind="generate", prompt="Hello", max_tokens=2),
        Request(kind="generate", max_tokens=2),  # neither prompt nor messages
        Request(kind="loglikelihood", context="Answer:", continuations=(" A",)),
    ]
    answers = run(backends[4], requests)
    assert answers[0].ok and answers[2].ok
    assert answers[1].error is not None and "neither messages nor prompt" in answers[1].error


def test_blocking_api_matches_async_api(backends: dict[int, HFBackend]) -> None:
    backend = backends[4]
    requests = [Request(kind="generate", prompt=p, max_tokens=5) for p in PROMPTS[:3]]
    assert [a.text for a in backend.generate_batch(requests)] == [a.text for a in run(backend, requests)]
    sync = backend.loglikelihood_batch(LL_REQUESTS[:2])
    for a, b in zip(sync, run(backend, LL_REQUESTS[:2])):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-5)


def test_missing_path_is_a_one_line_backend_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendError, match="does not exist") as err:
        start(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackendError, match="no config.json") as err:
        start(empty)
    assert str(empty) in str(err.value)


def test_hub_id_while_offline_is_a_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError, match="offline") as err:
        start(Path("proctor-test-org/no-such-model-3f9a"))
    assert "proctor-test-org/no-such-model-3f9a" in str(err.value)


def test_model_needing_remote_code_says_trust_remote_code(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config["model_type"] = "proctor_custom_lm"
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
    }
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match="trust_remote_code: true") as err:
        start(custom)
    assert str(custom) in str(err.value)
    # Trusted, but the code files are missing: still one clear line, not a traceback.
    with pytest.raises(BackendError) as err:
        start(custom, trust_remote_code=True)
    assert "\n" not in str(err.value)


def test_missing_extra_is_reported_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'proctor\[hf\]'"):
        HFBackend(HFModelConfig(path="whatever"))


def test_continuation_rule_on_offsets() -> None:
    # <s> Answer : " A" for "Answer:" + " A"
    assert continuation_start([0, 0, 6, 7], 7, 9, first=1) == 3
    # "Answer: " + "A": " A" starts at 7 < 8 but reaches past it: it counts.
    assert continuation_start([0, 0, 6, 7], 8, 9, first=1) == 3
    # Empty continuation: no tokens.
    assert continuation_start([0, 0, 6], 7, 7, first=1) == 3
    # Byte tokens of one character share its start; a new character starts the continuation.
    assert continuation_start([0, 0, 0, 0, 1, 1, 1], 1, 2, first=1) == 4
    assert continuation_logprob([0, 0, 6, 7], [None, -1.0, -2.0, -0.5], 7, 9) == (-0.5, 1)
    assert continuation_logprob([0, 5], [None, -1.5], 0, 9) == (-1.5, 1)
    # A token past the prompt (the server generated one) is not part of the continuation.
    assert continuation_logprob([0, 0, 6, 7, 9], [None, -1.0, -2.0, -0.5, -3.0], 7, 9) == (-0.5, 1)


def test_close_then_start_again(tiny_model_dir: Path) -> None:
    backend = start(tiny_model_dir)
    first = run(backend, [Request(kind="generate", prompt="Hello", max_tokens=3)])[0].text
    asyncio.run(backend.close())
    with pytest.raises(RuntimeError, match="not started"):
        backend.identity
    asyncio.run(backend.start())
    assert run(backend, [Request(kind="generate", prompt="Hello", max_tokens=3)])[0].text == first
    asyncio.run(backend.close())


def test_max_seq_len_is_measured_with_the_models_own_tokenizer(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A local model's prompts are fitted by counting its real tokens (chat template included),
    not by a character estimate: every request sent fits, counted the way the model counts."""
    import json as _json

    from proctor.cli import main
    from proctor.models.hf import HFBackend
    from proctor.config.schema import HFModelConfig
    from proctor.core import Message, Request

    limit = 700
    argv = ["run", "--hf-path", str(tiny_model_dir), "--datasets", "demo_gen", "--limit", "2", "--max-seq-len",
            str(limit), "--max-out-len", "4", "-w", str(tmp_path)]
    assert main(argv) == 0
    (run,) = [p for p in tmp_path.iterdir() if (p / "config.json").is_file()]
    backend = HFBackend(HFModelConfig(path=str(tiny_model_dir)))
    asyncio.run(backend.start())
    try:
        shots_seen = set()
        for path in (run / "predictions").rglob("*.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                prompt = _json.loads(line)["prompt"]
                request = Request(kind="generate", messages=tuple(Message(m["role"], m["content"]) for m in prompt),
                                  max_tokens=4)
                assert backend.count_tokens(request) <= limit
                shots_seen.add(len(prompt) // 2)
        assert min(shots_seen) < 5  # the limit did drop examples somewhere
    finally:
        asyncio.run(backend.close())
