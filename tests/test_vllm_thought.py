"""VLLMBackend's stop strings and thoughts, without a GPU: vLLM's engine is replaced by a scripted
one that keeps vLLM's contract (stop strings end generation and are left out of the text,
`stop_reason` names the one that fired, `token_ids` are the tokens generated, a prompt given as
token ids is continued from there). The tokenizer and chat templates are the tiny model's."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from proctor.core import Message, Request

pytest.importorskip("transformers")
if importlib.util.find_spec("vllm") is not None:  # pragma: no cover - the real one is tested on a GPU
    pytest.skip("vllm is installed: tests/test_vllm_backend.py runs the real engine", allow_module_level=True)


@dataclass
class SamplingParams:
    """vLLM's SamplingParams, the fields Proctor sets."""

    n: int = 1
    temperature: float = 0.0
    max_tokens: int = 16
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class _Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    stop_reason: str | None = None


@dataclass
class _Output:
    prompt_token_ids: list[int]
    outputs: list[_Completion] = field(default_factory=list)


class ScriptedLLM:
    """Answers each prompt with its script (by the question in it), as vLLM would generate it."""

    def __init__(self, tokenizer: Any, scripts: dict[str, str]) -> None:
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.calls: list[list[SamplingParams]] = []
        self.prompts: dict[tuple[int, ...], list[int]] = {}  # first-pass prompt -> its script's tokens

    def _script(self, ids: list[int]) -> tuple[list[int], int]:
        for prompt, tokens in self.prompts.items():
            if tuple(ids[: len(prompt)]) == prompt:
                return tokens, len(ids) - len(prompt)  # a continuation: go on from there
        text = self.tokenizer.decode(ids)
        question = next(q for q in self.scripts if q in text)
        tokens = self.tokenizer(self.scripts[question], add_special_tokens=False)["input_ids"]
        tokens.append(self.tokenizer.eos_token_id)
        self.prompts[tuple(ids)] = tokens
        return tokens, 0

    def generate(self, prompts: list[dict[str, Any]], params: list[SamplingParams], use_tqdm: bool = False) -> list[Any]:
        self.calls.append(list(params))
        outs = []
        for prompt, p in zip(prompts, params):
            ids = prompt["prompt_token_ids"]
            script, at = self._script(ids)
            generated: list[int] = []
            done = _Completion("", [], "length")
            for token in script[at:]:
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                hit = min(((text.find(s), s) for s in p.stop or () if s in text), default=None)
                if hit is not None:
                    done = _Completion(text[: hit[0]], list(generated), "stop", hit[1])
                    break
                if token == self.tokenizer.eos_token_id:
                    done = _Completion(text, list(generated), "stop")
                    break
                if len(generated) >= p.max_tokens:
                    done = _Completion(text, list(generated), "length")
                    break
            outs.append(_Output(list(ids), [done]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)


def _backend(model_dir: Path, scripts: dict[str, str], *, opens: bool, **settings: Any) -> tuple[Any, ScriptedLLM]:
    from transformers import AutoTokenizer

    from proctor.config.schema import VLLMModelConfig
    from proctor.models.vllm import VLLMBackend

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if opens:  # Qwen3 / DeepSeek-R1: the generation prompt opens the thought
        tokenizer.chat_template = tokenizer.chat_template.replace("<|assistant|>\n{% endif %}",
                                                                  "<|assistant|>\n<think>\n{% endif %}")
    backend = VLLMBackend(VLLMModelConfig(path=str(model_dir), **settings))
    llm = ScriptedLLM(tokenizer, scripts)
    backend._llm, backend._tokenizer, backend._chat, backend._identity = llm, tokenizer, True, "vllm|test"
    return backend, llm


def _ask(question: str, stop: tuple[str, ...] = ("\n\nQ:",), max_tokens: int = 200) -> Request:
    return Request("generate", messages=(Message("user", question),), max_tokens=max_tokens, stop=stop)


def test_stop_strings_wait_for_the_thought(fake_vllm: None, tiny_model_dir: Path) -> None:
    scripts = {
        "opened": "First\n\nQ: is it 4? no.</think>The answer is 5.\n\nQ: next one",
        "never": "Hmm\n\nQ: still thinking and thinking and thinking",
        "self": "<think>a\n\nQ: b</think>Answer 7\n\nQ: x",
        "plain": "Answer 3\n\nQ: y",
    }
    backend, llm = _backend(tiny_model_dir, scripts, opens=True)
    opened, never = backend.run_requests([_ask("opened"), _ask("never", max_tokens=8)])
    # The template opened the thought: vLLM got no stop strings; the answer is cut after the close.
    assert [p.stop for p in llm.calls[0]] == [None, None]
    assert (opened.text, opened.reasoning_ended, opened.finish_reason) == (
        "First\n\nQ: is it 4? no.</think>The answer is 5.", True, "stop")
    assert opened.reasoning_tokens and opened.reasoning_tokens < opened.completion_tokens
    assert (never.reasoning_ended, never.finish_reason, never.completion_tokens) == (False, "length", 8)
    assert never.reasoning_tokens == 8 and "\n\nQ:" in never.text  # never cut inside the thought

    backend, llm = _backend(tiny_model_dir, scripts, opens=False)
    own, plain = backend.run_requests([_ask("self"), _ask("plain")])
    # vLLM's own stop fired inside a thought the model opened itself: it went on from there.
    assert len(llm.calls) == 2 and [p.stop for p in llm.calls[1]] == [None]
    assert (own.text, own.reasoning_ended) == ("<think>a\n\nQ: b</think>Answer 7", True)
    assert (plain.text, plain.reasoning_ended, plain.finish_reason) == ("Answer 3", None, "stop")

    # A reasoning model's replies never get vLLM's stop strings.
    backend, llm = _backend(tiny_model_dir, scripts, opens=False, reasoning=True)
    (own,) = backend.run_requests([_ask("self")])
    assert len(llm.calls) == 1 and llm.calls[0][0].stop is None
    assert own.text == "<think>a\n\nQ: b</think>Answer 7"
