"""Red team: a local model whose reasoning markers are SPECIAL tokens (gpt-oss's harmony
`<|channel|>`/`<|message|>`, think tags a tokenizer registers as special) must not lose them
when its output is decoded: skip_special_tokens dropped them, the thought read as the answer, and
a thought cut off by the token limit was scored from the thought."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.models.hf_generate import GenInput, _output
from proctor.models.thought import decode_output, thought_for
from proctor.reasoning import split_answer

HARMONY = ["<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|return|>"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>", *HARMONY]})
    return tok


def _generated(tokenizer, text: str, max_tokens: int | None = None, stop: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    x = GenInput(ids=(1, 2, 3), max_tokens=max_tokens or len(ids) + 5, stop=stop,
                 thought=thought_for(None, "prompt") if stop else None)
    return _output(tokenizer, x, ids, None, set()), len(ids)


def test_special_think_tags_survive_decoding(tokenizer) -> None:  # type: ignore[no-untyped-def]
    out, _ = _generated(tokenizer, "<think>The answer is 5.</think>The answer is 7.")
    split = split_answer(out.text, finish_reason=out.finish_reason)
    assert (split.status, split.answer) == ("answered", "The answer is 7.")
    # Cut off inside the thought: no answer, never the thought's "7".
    out, n = _generated(tokenizer, "<think>The answer is 7. Let me check", max_tokens=None)
    out, n = _generated(tokenizer, "<think>The answer is 7. Let me check", max_tokens=n)
    split = split_answer(out.text, finish_reason=out.finish_reason)
    assert out.finish_reason == "length" and split.status == "truncated" and split.answer is None


def test_harmony_channels_of_a_local_gpt_oss_survive_decoding(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = ("<|channel|>analysis<|message|>Maybe 5.<|end|><|start|>assistant<|channel|>final<|message|>"
            "The answer is 7.<|return|>")
    out, _ = _generated(tokenizer, text)
    assert split_answer(out.text).answer == "The answer is 7."
    out, n = _generated(tokenizer, "<|channel|>analysis<|message|>The answer is 7. Hmm")
    out, _ = _generated(tokenizer, "<|channel|>analysis<|message|>The answer is 7. Hmm", max_tokens=n)
    assert split_answer(out.text, finish_reason=out.finish_reason).status == "truncated"


def test_a_stop_string_waits_for_a_special_closing_tag(tokenizer) -> None:  # type: ignore[no-untyped-def]
    out, _ = _generated(tokenizer, "<think>Step one.\n\nStep two.</think>The answer is 7.\n\nQ: next", stop=("\n\n",))
    assert out.text.endswith("The answer is 7.") and "Step two" in out.text and out.reasoning_ended is True


def test_other_special_tokens_still_go_and_plain_output_is_unchanged(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer("Hello world", add_special_tokens=False)["input_ids"]
    assert decode_output(tokenizer, ids) == tokenizer.decode(ids, skip_special_tokens=True)
    eos = tokenizer.eos_token_id
    if eos is not None:
        assert decode_output(tokenizer, [*ids, eos]) == tokenizer.decode([*ids, eos], skip_special_tokens=True)
