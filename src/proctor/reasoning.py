"""The answer split: what part of a model's output is its reasoning and what part its answer.

One function decides it for every reader of an output (scorers, the judge, compare, the
report, the record writer): `split_answer`. A reasoning model's output is hostile to a naive
reader: its thought holds candidate answers, and a reply cut off by the token limit holds
only thought. The rules:

- reasoning is what a server returns in a message's `reasoning_content` / `reasoning` field,
  what lies inside `<think>`/`<thinking>` blocks (any case, several blocks), the text before
  and between such blocks, the `analysis` channel of gpt-oss (when a server passes the channel
  tokens through, or drops them: `analysisWe need...assistantfinal7`), and what lies between a
  model's configured markers;
- the answer is the text after the last closed block (or gpt-oss's `final` channel);
- an output whose reasoning never closed (an opening marker without its close, a
  `reasoning_ended=False` record, or reasoning with no answer after a `length` stop) is
  `truncated`: it has no answer and is never read for one;
- reasoning that closed with nothing after it is `no_answer`.

It is linear in the length of the output (plain substring searches, no backtracking).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

AnswerStatus = Literal["answered", "truncated", "no_answer"]


@dataclass(frozen=True)
class ReasoningMarkers:
    """A model's reasoning delimiters (`reasoning: {start, end}` in a model config).

    `opened_by_prompt`: the chat template writes the opening marker into the prompt (Qwen3,
    DeepSeek-R1 templates end with `<think>\\n`), so an output without the closing marker is a
    thought that never ended.
    """

    start: str = "<think>"
    end: str = "</think>"
    opened_by_prompt: bool = False

    def __post_init__(self) -> None:
        if not self.end:
            raise ValueError("reasoning markers need an end marker")


# The tags reasoning models write when nothing is configured.
DEFAULT_TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"), ("<thinking>", "</thinking>"))
_TAG = re.compile(r"<(/?)(think|thinking)>", re.IGNORECASE)

# gpt-oss's harmony format, when a server passes the channel tokens through.
_CHANNEL = re.compile(r"<\|channel\|>\s*(analysis|commentary|final)\s*(?:<\|constrain\|>[^<]*)?<\|message\|>")
_HARMONY_END = re.compile(r"<\|(?:end|return|call)\|>")
_HARMONY_START = re.compile(r"<\|start\|>\s*assistant\s*")


@dataclass(frozen=True)
class AnswerSplit:
    """An output split into reasoning and answer.

    `answer` is None when there is none to read (truncated, or nothing after the reasoning);
    `length` says generation ended by the token limit (after the reasoning closed, when there
    was reasoning: the answer is scored as usual and counted as cut).
    """

    answer: str | None
    reasoning: str | None
    status: AnswerStatus
    length: bool = False

    @property
    def truncated(self) -> bool:
        return self.status == "truncated"


def split_answer(
    output: str | None,
    *,
    reasoning: str | None = None,
    reasoning_ended: bool | None = None,
    finish_reason: str | None = None,
    markers: ReasoningMarkers | None = None,
) -> AnswerSplit:
    """Split one output; `reasoning` is a server's separate reasoning field, `reasoning_ended`
    what a backend that tracked the markers while generating knows (False: it never closed)."""
    text = output or ""
    field_reasoning = reasoning if reasoning and reasoning.strip() else None
    cut = finish_reason == "length"

    answer, parsed_reasoning, closed = _split_text(text, markers)
    parts = [p for p in (field_reasoning, parsed_reasoning) if p]
    all_reasoning = "\n".join(parts) if parts else None

    if closed is False or reasoning_ended is False:
        return AnswerSplit(None, all_reasoning if all_reasoning is not None else text, "truncated", cut)
    if closed and all_reasoning is None:
        # An empty thought ("<think>\n\n</think>\n\nHello"): no reasoning to keep, and the blank
        # lines after it are no part of the answer (ifeval drops them after any thought).
        answer = answer.lstrip()
    if all_reasoning is not None and not answer.strip():
        # A thought with nothing after it: cut off by the limit (a server's reasoning parser
        # puts an unfinished thought in the reasoning field, content null), or a model that
        # concluded nothing.
        return AnswerSplit(None, all_reasoning, "truncated" if cut else "no_answer", cut)
    return AnswerSplit(answer, all_reasoning, "answered", cut)


def _split_text(text: str, markers: ReasoningMarkers | None) -> tuple[str, str | None, bool | None]:
    """(answer, reasoning found in the text or None, closed: None when there was no reasoning)."""
    if "<|channel|>" in text:
        return _split_harmony(text)
    if _STRIPPED_ANALYSIS.match(text):
        return _split_stripped_harmony(text)
    if markers is not None and (markers.start, markers.end) not in DEFAULT_TAGS:
        return _split_markers(text, markers)
    return _split_tags(text, opened_by_prompt=markers is not None and markers.opened_by_prompt)


def _split_tags(text: str, *, opened_by_prompt: bool) -> tuple[str, str | None, bool | None]:
    """`<think>`/`<thinking>` blocks in any case; an orphan close means the prompt opened it."""
    last_close_end = -1
    depth_open = opened_by_prompt
    seen = opened_by_prompt
    for match in _TAG.finditer(text):
        seen = True
        if match.group(1):  # a closing tag
            last_close_end = match.end()
            depth_open = False
        else:
            depth_open = True
    if not seen:
        return text, None, None
    if depth_open:
        return "", _strip_tags(text), False
    reasoning = _strip_tags(text[: _close_start(text, last_close_end)])
    return text[last_close_end:], reasoning, True


def _close_start(text: str, close_end: int) -> int:
    return text.rfind("<", 0, close_end)


def _strip_tags(text: str) -> str:
    return _TAG.sub("", text).strip()


def _split_markers(text: str, markers: ReasoningMarkers) -> tuple[str, str | None, bool | None]:
    """A model's own markers: the answer follows the last end marker."""
    end = text.rfind(markers.end)
    if end >= 0 and markers.start and markers.start in text[end + len(markers.end):]:
        # Another thought opened after the last one closed and never closed: as with tags, no answer.
        return "", text.replace(markers.start, "").replace(markers.end, "").strip(), False
    if end >= 0:
        reasoning = text[:end]
        if markers.start:
            reasoning = reasoning.replace(markers.start, "")
        reasoning = reasoning.replace(markers.end, "").strip()
        return text[end + len(markers.end) :], reasoning, True
    if markers.opened_by_prompt or (markers.start and markers.start in text):
        reasoning = text.replace(markers.start, "").strip() if markers.start else text.strip()
        return "", reasoning, False
    return text, None, None


# gpt-oss through a server that drops special tokens (skip_special_tokens: TGI, raw
# transformers pipelines): "analysisWe need to...assistantfinalThe answer is 7". The channel
# name runs straight into the thought's first word, which no prose does.
_STRIPPED_ANALYSIS = re.compile(r"\s*analysis(?=[A-Z])")
_STRIPPED_FINAL = "assistantfinal"


def _split_stripped_harmony(text: str) -> tuple[str, str | None, bool | None]:
    """The stripped harmony form: the answer follows the last `assistantfinal`."""
    end = text.rfind(_STRIPPED_FINAL)
    head = _STRIPPED_ANALYSIS.match(text)
    assert head is not None
    if end < 0:
        return "", text[head.end():].strip(), False
    return text[end + len(_STRIPPED_FINAL):], text[head.end():end].strip(), True


def _split_harmony(text: str) -> tuple[str, str | None, bool | None]:
    """gpt-oss: `analysis`/`commentary` channels are reasoning, the `final` channel the answer."""
    channels = list(_CHANNEL.finditer(text))
    reasoning_parts: list[str] = []
    final: str | None = None
    head = text[: channels[0].start()] if channels else text
    if head.strip():
        reasoning_parts.append(_HARMONY_START.sub("", head).strip())
    for i, match in enumerate(channels):
        body_end = channels[i + 1].start() if i + 1 < len(channels) else len(text)
        body = text[match.end() : body_end]
        end = _HARMONY_END.search(body)
        body = body[: end.start()] if end else _HARMONY_START.sub("", body)
        if match.group(1) == "final":
            final = body
        else:
            reasoning_parts.append(_HARMONY_START.sub("", body).strip())
    reasoning = "\n".join(p for p in reasoning_parts if p) or None
    if final is None:
        return "", reasoning if reasoning is not None else text, False
    return final, reasoning, True


def split_record(record: Any) -> AnswerSplit:
    """The split of a stored record (proctor.core.Record): what every reader of a prediction
    (scorers, the judge, compare, the report) takes the answer from. Records are stored split
    already (engine.records), so this recovers the same answer; older records with raw
    `<think>` outputs are split here."""
    return split_answer(record.output, reasoning=record.reasoning, reasoning_ended=record.reasoning_ended,
                        finish_reason=record.finish_reason)
