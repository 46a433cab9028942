"""Where a local model's thought ends while it generates: stop strings wait for it (HF and vLLM).

A task's stop strings (`\\n\\n`, `Q:`) belong to the answer. Inside a `<think>` block a reasoning
model writes blank lines and "Q:" freely; a stop that fired there would cut the thought and
leave no answer. So a stop string only ends generation once the reasoning has closed, and the
answer is cut at it only after the closing marker. The same markers as proctor.reasoning: the
default `<think>`/`<thinking>` tags (any case), or a model's configured ones; a chat template
that ends its prompt with the opening marker (Qwen3, DeepSeek-R1) opens the thought itself.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from proctor.reasoning import DEFAULT_TAGS, ReasoningMarkers


@dataclass(frozen=True)
class Thought:
    """A row's reasoning markers, and whether its prompt already opened a thought."""

    pairs: tuple[tuple[str, str], ...]
    fold_case: bool
    opened: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        return _pattern(self.pairs, self.fold_case)

    @property
    def longest(self) -> int:
        return max(len(m) for pair in self.pairs for m in pair)


def thought_for(markers: ReasoningMarkers | None, prompt_text: str) -> Thought:
    """The row's markers (the model's configured ones, else the default tags); `prompt_text` (the
    end of the rendered prompt) tells whether the template opened the thought."""
    if markers is not None and (markers.start, markers.end) not in DEFAULT_TAGS:
        pairs, fold = ((markers.start, markers.end),), False
    else:
        pairs, fold = DEFAULT_TAGS, True
    tail = prompt_text.rstrip()
    if fold:
        tail = tail.lower()
    opened = any(start and tail.endswith(start.lower() if fold else start) for start, _ in pairs)
    opened = opened or (markers is not None and markers.opened_by_prompt)
    return Thought(pairs, fold, opened)


_PATTERNS: dict[tuple[Any, ...], re.Pattern[str]] = {}


def _pattern(pairs: tuple[tuple[str, str], ...], fold: bool) -> re.Pattern[str]:
    """One alternation of every marker; group `end` for a closing one (longest first)."""
    key = (pairs, fold)
    if key not in _PATTERNS:
        ends = sorted({e for _, e in pairs}, key=len, reverse=True)
        starts = sorted({s for s, _ in pairs if s}, key=len, reverse=True)
        alternatives = [f"(?P<end>{'|'.join(re.escape(e) for e in ends)})"]
        if starts:
            alternatives.append(f"(?P<start>{'|'.join(re.escape(s) for s in starts)})")
        _PATTERNS[key] = re.compile("|".join(alternatives), re.IGNORECASE if fold else 0)
    return _PATTERNS[key]


def scan(text: str, thought: Thought, open_: bool) -> tuple[bool, int | None]:
    """(is a thought open at the end of `text`, where the text after the last closing marker
    starts, None when no marker closed in it), starting in state `open_`."""
    after: int | None = None
    for match in thought.pattern.finditer(text):
        if match.group("end") is not None:
            open_, after = False, match.end()
        else:
            open_ = True
    return open_, after


def answer_start(text: str, thought: Thought) -> int | None:
    """Where the answer part of a whole output starts: after the last closing marker, 0 when
    no thought was seen, None when a thought is still open."""
    open_, after = scan(text, thought, thought.opened)
    if open_:
        return None
    return after or 0


def cut_answer(text: str, stops: Sequence[str], thought: Thought | None) -> tuple[str, bool | None]:
    """The output cut at its first stop string in the answer part (leading blanks of the answer
    are not searched), and whether the reasoning ended (None: there was none; False: it never
    closed, and the output is not cut at all)."""
    from proctor.models.hf_generate import cut_at_stop

    if thought is None:
        return cut_at_stop(text, stops), None
    start = answer_start(text, thought)
    if start is None:
        return text, False
    answer = text[start:]
    lead = len(answer) - len(answer.lstrip()) if start else 0  # blanks after a closing marker
    cut = text[: start + lead] + cut_at_stop(answer[lead:], stops)
    seen = thought.opened or thought.pattern.search(text) is not None
    return cut, (True if seen else None)


@dataclass(frozen=True)
class Settled:
    """A finished row: its answer text (cut at a stop after the thought), whether the token
    limit ended it, whether its reasoning ended, and the tokens its thought took."""

    text: str
    hit_length: bool
    reasoning_ended: bool | None
    reasoning_tokens: int | None


def settle(text: str, stops: Sequence[str], thought: Thought | None, n_tokens: int, max_tokens: int,
           count: Any) -> Settled:
    """The output of a row that generated `n_tokens` tokens decoding to `text` (HF and vLLM);
    `count(text)` gives a text's tokens (the thought's, counted with the model's tokenizer)."""
    answer, ended = cut_answer(text, stops, thought)
    # As OpenAI (and `proctor serve`) report it: cut by max_tokens unless a stop string or EOS ended it.
    hit_length = answer == text and n_tokens >= max_tokens
    reasoning_tokens = None
    if ended is False:
        reasoning_tokens = n_tokens
    elif ended and thought is not None:
        start = answer_start(text, thought) or 0
        reasoning_tokens = min(n_tokens, count(text[:start])) if start else 0
    return Settled(answer, hit_length, ended, reasoning_tokens)


def stopped_inside(text: str, thought: Thought | None) -> bool:
    """Whether an output a server's own stop strings ended (vLLM) stopped inside a thought:
    it must go on, without stop strings, until the thought closes."""
    return thought is not None and answer_start(text, thought) is None


class ThoughtTracker:
    """While a row generates: is its thought open, and from which token its answer is read.

    Only a window of the newest tokens is decoded at each step; a marker found moves the
    window's start past it, so it is counted once.
    """

    def __init__(self, thought: Thought, window: int) -> None:
        self.thought = thought
        self.open = thought.opened
        self.answer_from = 0  # the first token after the last closing marker (0: none yet)
        self._from = 0  # tokens before this were read for markers
        self._window = 4 * thought.longest + 2 + window

    def stop_window(self, tokens: Sequence[int], decode: Any, width: int) -> str | None:
        """The text to search for stop strings (the newest `width` tokens of the answer part), or
        None while the thought is open. Leading blanks of the answer are dropped."""
        start = max(self._from, len(tokens) - self._window)
        open_, after = scan(decode(tokens[start:]), self.thought, self.open)
        if after is not None or open_ != self.open:
            self._from = len(tokens)  # the marker is read once
            if after is not None:
                self.answer_from = len(tokens)
            self.open = open_
        if self.open:
            return None
        begin = max(self.answer_from, len(tokens) - width)
        text = decode(tokens[begin:])
        # The blanks right after a closing marker are not the answer's end.
        return text.lstrip() if begin == self.answer_from and self.answer_from else text


# Special tokens that carry a reasoning model's structure: decoding with skip_special_tokens
# drops them (gpt-oss's harmony tokens, think tags a tokenizer registers as special), and the
# thought would then read as part of the answer. Kept as text; other special tokens still go.
KEPT_SPECIAL = frozenset({"<think>", "</think>", "<thinking>", "</thinking>", "<|channel|>", "<|message|>",
                          "<|start|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"})
_KEPT_IDS: "weakref.WeakKeyDictionary[Any, dict[frozenset[str], dict[int, str]]]" = weakref.WeakKeyDictionary()


def _kept_ids(tokenizer: Any, keep: frozenset[str]) -> dict[int, str]:
    """{id: text} of the tokenizer's special tokens whose text is in `keep` (remembered per
    tokenizer object: the stop check decodes at every step)."""
    try:
        per_tokenizer = _KEPT_IDS.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: computed each time
        per_tokenizer = {}
    if keep not in per_tokenizer:
        found: dict[int, str] = {}
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        for token_id, token in dict(decoder).items():
            text = str(getattr(token, "content", token))
            if getattr(token, "special", True) and text in keep:
                found[int(token_id)] = text
        per_tokenizer[keep] = found
    return per_tokenizer[keep]


def decode_output(tokenizer: Any, ids: Sequence[int], thought: Thought | None = None) -> str:
    """Generated tokens as text without special tokens, except the reasoning markers among them
    (the default ones, gpt-oss's channel tokens and `thought`'s own): the answer split must see
    where the thought ends. Without such a token in `ids` it is exactly tokenizer.decode(ids,
    skip_special_tokens=True)."""
    ids = list(ids)
    keep = KEPT_SPECIAL | frozenset(m for pair in (thought.pairs if thought else ()) for m in pair if m)
    kept = _kept_ids(tokenizer, keep)
    if not kept or not any(i in kept for i in ids):
        return str(tokenizer.decode(ids, skip_special_tokens=True))
    parts: list[str] = []
    run: list[int] = []
    for i in ids:
        if i in kept:
            if run:
                parts.append(str(tokenizer.decode(run, skip_special_tokens=True)))
                run = []
            parts.append(kept[i])
        else:
            run.append(i)
    if run:
        parts.append(str(tokenizer.decode(run, skip_special_tokens=True)))
    return "".join(parts)
