"""`proctor serve` for lm-evaluation-harness's `local-completions` client: token-id prompts,
top-k log-probs, n choices -- a real server over the tiny model, checked against the model
called directly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from serve_helpers import running_server

pytest.importorskip("fastapi")
pytest.importorskip("transformers")

from proctor.config.schema import HFModelConfig  # noqa: E402
from proctor.models.hf import HFBackend  # noqa: E402
from proctor.serve.server import RunningServer  # noqa: E402

MODEL = "tiny"
MAX_SEQ_LEN = 512
CONTEXT = "Question: Which of the following is a prime number?\nAnswer:"
CONTINUATION = " 7, because it has no divisors"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[RunningServer]:
    with running_server(tiny_model_dir, served_model_name=MODEL, max_batch_size=8, max_seq_len=MAX_SEQ_LEN,
                        batch_wait_ms=20) as srv:
        yield srv


@pytest.fixture(scope="module")
def direct(tiny_model_dir: Path) -> Iterator[HFBackend]:
    backend = HFBackend(HFModelConfig(path=str(tiny_model_dir), max_seq_len=MAX_SEQ_LEN, batch_size=8))
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


def complete(server: RunningServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(server.base_url + "/v1/completions", json={"model": MODEL, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def encode(direct: HFBackend, text: str, special: bool = True) -> list[int]:
    return list(direct._loaded.tokenizer(text, add_special_tokens=special)["input_ids"])


def reference(direct: HFBackend, ids: list[int]) -> tuple[list[float], Any]:
    """log P(ids[k] | ids[:k]) for k >= 1 from one plain forward pass, and the log-softmax."""
    import torch

    lm = direct._loaded
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0, :-1].float()
        norm = torch.log_softmax(logits, -1)
    picked = norm.gather(-1, torch.tensor(ids[1:], device=norm.device)[:, None])[:, 0]
    return picked.tolist(), norm


def test_lm_eval_local_completions_loglikelihood_request(server: RunningServer, direct: HFBackend) -> None:
    # lm-eval: context_enc + continuation_enc, read by position: sum(token_logprobs[ctxlen:-1]).
    context_enc = encode(direct, CONTEXT)
    continuation_enc = encode(direct, CONTINUATION, special=False)
    ids = context_enc + continuation_enc
    ctxlen = len(context_enc)
    data = complete(server, prompt=[ids], temperature=0, max_tokens=1, logprobs=1, seed=1234, echo=True)
    (choice,) = data["choices"]
    lp = choice["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1  # the prompt, then the one generated token
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    expected, norm = reference(direct, ids)
    assert lp["token_logprobs"][1 : len(ids)] == pytest.approx(expected, abs=1e-4)
    assert sum(lp["token_logprobs"][ctxlen:-1]) == pytest.approx(sum(expected[ctxlen - 1 :]), abs=1e-4)
    # is_greedy as lm-eval computes it: the token's log-prob is the best at every position.
    argmax = norm.argmax(-1).tolist()
    for k in range(ctxlen, len(ids)):
        top = lp["top_logprobs"][k]
        assert max(top.values()) == pytest.approx(float(norm[k - 1].max()), abs=1e-4)
        greedy = lp["token_logprobs"][k] >= max(top.values()) - 1e-6
        assert greedy == (argmax[k - 1] == ids[k])
    assert data["usage"]["prompt_tokens"] == len(ids)


def test_flat_batched_and_text_prompts_agree(server: RunningServer, direct: HFBackend) -> None:
    texts = ["The quick brown fox jumps", "路由器根据路由表转发数据包"]
    id_lists = [encode(direct, t) for t in texts]
    flat = complete(server, prompt=id_lists[0], echo=True, logprobs=1, max_tokens=0)
    batched = complete(server, prompt=id_lists, echo=True, logprobs=1, max_tokens=0)
    by_text = complete(server, prompt=texts, echo=True, logprobs=1, max_tokens=0)
    assert [c["index"] for c in batched["choices"]] == [0, 1]
    assert flat["choices"][0]["logprobs"]["token_logprobs"] == batched["choices"][0]["logprobs"]["token_logprobs"]
    for ids, text, from_ids, from_text in zip(id_lists, texts, batched["choices"], by_text["choices"]):
        values = from_ids["logprobs"]["token_logprobs"]
        assert len(values) == len(ids)
        assert values[1:] == pytest.approx(from_text["logprobs"]["token_logprobs"][1:], abs=1e-4)
        assert values[1:] == pytest.approx(reference(direct, ids)[0], abs=1e-4)
        assert from_ids["text"].endswith(text)  # the decoded prompt (after any BOS text)
        assert "".join(from_ids["logprobs"]["tokens"]) == from_ids["text"]


def test_token_id_prompt_generates_like_its_text(server: RunningServer, direct: HFBackend) -> None:
    text = "Water boils at one hundred degrees"
    by_text = complete(server, prompt=text, max_tokens=5, temperature=0)
    by_ids = complete(server, prompt=[encode(direct, text)], max_tokens=5, temperature=0)
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert by_ids["usage"] == by_text["usage"]


def test_top_logprobs_are_the_real_alternatives(server: RunningServer, direct: HFBackend) -> None:
    text = "The capital of France is"
    ids = encode(direct, text)
    data = complete(server, prompt=text, echo=True, logprobs=3, max_tokens=0)
    lp = data["choices"][0]["logprobs"]
    _, norm = reference(direct, ids)
    tokenizer = direct._loaded.tokenizer
    for k in range(1, len(ids)):
        values, best = norm[k - 1].topk(3)
        expected = {tokenizer.decode([t]): v for t, v in zip(best.tolist(), values.tolist())}
        got = lp["top_logprobs"][k]
        assert set(expected) <= set(got) and len(got) <= 4  # the 3 best, plus the token itself
        for token, value in expected.items():
            assert got[token] == pytest.approx(value, abs=1e-4)
        assert got[lp["tokens"][k]] == pytest.approx(lp["token_logprobs"][k], abs=1e-6)


def test_n_choices(server: RunningServer) -> None:
    one = complete(server, prompt="Let us think step by step.", max_tokens=4, temperature=0)
    three = complete(server, prompt=["Let us think step by step.", "An algorithm is"], max_tokens=4,
                     temperature=0, n=3)
    assert [c["index"] for c in three["choices"]] == list(range(6))
    assert [c["text"] for c in three["choices"][:3]] == [one["choices"][0]["text"]] * 3
    assert three["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"] + (
        complete(server, prompt="An algorithm is", max_tokens=1)["usage"]["prompt_tokens"]
    )
    chat = httpx.post(server.base_url + "/v1/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0, "n": 2,
    }).json()
    assert [c["index"] for c in chat["choices"]] == [0, 1]
    assert chat["choices"][0]["message"] == chat["choices"][1]["message"]
    assert chat["usage"]["completion_tokens"] == 2 * chat["usage"]["completion_tokens"] // 2


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([[5, 6], []], "a token-id prompt must not be empty"),
        ([10**9], "token id 1000000000 is out of range"),
        ([[-1, 3]], "token id -1 is out of range"),
    ],
)
def test_bad_token_prompts_are_400(server: RunningServer, prompt: Any, message: str) -> None:
    r = httpx.post(server.base_url + "/v1/completions", json={"model": MODEL, "prompt": prompt}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(message)


def test_models_name_the_checkpoint(server: RunningServer, tiny_model_dir: Path) -> None:
    card = httpx.get(server.base_url + "/v1/models", timeout=30).json()["data"][0]
    assert card["root"] == str(Path(tiny_model_dir).resolve())
    newest = max(int(f.stat().st_mtime) for f in Path(tiny_model_dir).iterdir() if f.is_file())
    assert card["created"] == newest
