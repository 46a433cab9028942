"""VLLMBackend: the missing-extra error here; real runs only where vLLM and a GPU exist."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from proctor.config.schema import HFModelConfig, VLLMModelConfig
from proctor.core import Request, Response
from proctor.errors import MissingExtraError

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


needs_vllm_gpu = pytest.mark.skipif(
    not (HAS_VLLM and _has_gpu()),
    reason="vLLM runs need the [vllm] extra and a CUDA GPU; this machine has "
    + ("no GPU" if HAS_VLLM else "no vllm package"),
)


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed: the missing-extra path cannot happen")
def test_missing_vllm_says_how_to_install() -> None:
    from proctor.models.vllm import VLLMBackend

    with pytest.raises(MissingExtraError, match=r"pip install 'proctor\[vllm\]'"):
        VLLMBackend(VLLMModelConfig(path="Qwen/Qwen2.5-0.5B-Instruct"))


def _run(backend: object, requests: list[Request]) -> list[Response]:
    answers: dict[int, Response] = {}
    asyncio.run(backend.process(requests, answers.__setitem__))  # type: ignore[attr-defined]
    return [answers[i] for i in range(len(requests))]


@needs_vllm_gpu
def test_vllm_agrees_with_hf_backend(tmp_path: Path) -> None:
    from proctor.models.hf import HFBackend
    from proctor.models.vllm import VLLMBackend
    from proctor.tiny_model import build_tiny_model

    # head_dim 64: a size every vLLM attention kernel supports.
    path = build_tiny_model(tmp_path / "tiny", hidden_size=256, num_heads=4)
    vllm = VLLMBackend(VLLMModelConfig(path=str(path), dtype="float32", max_seq_len=512,
                                       gpu_memory_utilization=0.3))
    hf = HFBackend(HFModelConfig(path=str(path), dtype="float32", max_seq_len=512))
    asyncio.run(vllm.start())
    asyncio.run(hf.start())
    assert vllm.chat and vllm.identity.startswith("vllm|")
    requests = [
        Request(kind="loglikelihood", context="Question: capital of France?\nAnswer:",
                continuations=(" A", " B", " Paris")),
        Request(kind="loglikelihood", context="答案：", continuations=("北京", "龘")),
        Request(kind="generate", prompt="The quick brown fox", max_tokens=8),
    ]
    got, want = _run(vllm, requests), _run(hf, requests)
    for a, b in zip(got[:2], want[:2]):
        assert a.continuation_lengths == b.continuation_lengths
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=2e-3)
    assert got[2].ok and got[2].completion_tokens == 8
    (pl,) = asyncio.run(vllm.prompt_logprobs(["Answer: A"]))
    assert pl.logprobs[0] is None and len(pl.tokens) == len(pl.offsets) == len(pl.logprobs)
    asyncio.run(vllm.close())


def test_vllm_counts_prompt_tokens_as_the_hf_backend_does(tiny_model_dir: Path) -> None:
    """The engine fits a vLLM model's prompts with this count (it cut them from the left before);
    checked here with the tiny model's real tokenizer, without vLLM itself."""
    from transformers import AutoTokenizer

    from proctor.core import Message
    from proctor.models.hf import HFBackend
    from proctor.models.vllm import VLLMBackend

    backend = object.__new__(VLLMBackend)  # no vLLM engine: only the tokenizer is used
    backend._tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend._chat = True
    backend._llm = object()
    hf = HFBackend(HFModelConfig(path=str(tiny_model_dir), device="cpu"))
    asyncio.run(hf.start())
    try:
        chat = Request(kind="generate", messages=(Message("user", "1 + 1 = ?"),), max_tokens=16)
        ppl = Request(kind="loglikelihood", context="Q: 1 + 1 = ?\nA:", continuations=(" 2", " 11"))
        for request in (chat, ppl):
            assert backend.count_tokens(request) == hf.count_tokens(request)
        assert backend.count_tokens(chat) > 16
    finally:
        asyncio.run(hf.close())
