"""The `bbh` scorer: BIG-Bench Hard's 27 tasks, answered in the chain-of-thought style of their
exemplars ("... So the answer is (B).").

The kind of answer is read from the gold target:

    choice    "(A)" .. "(R)"                   compared as the letter
    boolean   True/False, Yes/No, valid/invalid  compared case-insensitively
    number    "24", "-11520"                   compared as numbers ("24.0", "−11,520", "six" too)
    dyck      "] ) }"  (closing brackets)      compared with all whitespace removed
    words     "apple banana cherry" (sorted)   compared word by word, case-insensitively
    text      anything else ("Monsters, Inc")  compared as `exact` does (case, spaces, quotes)

Before any rule runs the output is trimmed to the model's own answer: reasoning is dropped by
proctor.reasoning.split_answer (a thought without an answer after it gives none), and the text
is cut where the model went on to
invent a next question ("\\n\\nQ: ..."), whose made-up "So the answer is" must not count.
Markdown (`**`, `__`, backticks), `$` and `\\text{...}` are removed. Then the first rule that
finds an answer of the target's kind gives it:

1. answer_is    the LAST "answer is" / "answer:" / "答案是" statement that is followed by an
                answer of the kind ("So the answer is (B).", "the answer is B", "answer is: (C)",
                "**Answer:** (D)"); a later statement without one ("the answer is not (A)")
                does not hide an earlier one
2. boxed        the last `\\boxed{...}` holding an answer of the kind
3. last_option  (choice) the last line is a standalone option: it starts or ends with the
                only "(X)" it holds ("(C) Yellow", "Therefore (C)."), and is not the end of an
                echoed list of options
   last_line    (boolean, number, dyck) the last line is nothing but the answer ("**Yes**")

Otherwise the answer is None and the rule "none". The first capital letter of the output, or
any letter in the middle of the reasoning, is never taken for an answer.

A dyck answer that repeats the input before the closing brackets ("[ { [ ] } ]" for the input
"[ { [") is read as its closing part: it is the completed sequence the task asks for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Literal

from proctor.core import Record, Sample, Score
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.exact import normalise_text
from proctor.scoring.text import clean_text
from proctor.scoring.numeric import (
    after_thinking,
    boxed_contents,
    cut_at_next_question,
    leading_number,
    to_fraction,
)

Kind = Literal["choice", "boolean", "number", "dyck", "words", "text"]

OPTION_LETTERS = "ABCDEFGHIJKLMNOPQR"  # BBH's largest task has 18 options
_CHOICE_TARGET = re.compile(rf"\(?([{OPTION_LETTERS}])\)?")
_BOOLEAN_WORDS = ("true", "false", "yes", "no", "valid", "invalid")
_NUMBER_TARGET = re.compile(r"[-−]?\d+(?:\.\d+)?")
_CLOSING = ")]}>"
_DYCK_TARGET = re.compile(r"[)\]}>](?:\s*[)\]}>])*")
_WORD = re.compile(r"[a-z][a-z'&.-]*")

# An answer statement; the answer follows it. "answer:" covers "Answer: (B)" and "Final answer: 24".
_CUE = re.compile(
    r"(?i:\banswer\s+(?:is|would\s+be|should\s+be|must\s+be)"
    r"(?:\s+(?:therefore|thus|then|clearly|simply|indeed))?\b\s*[:：]?"
    r"|\banswer\s*[:：])"
    r"|答案\s*(?:应该|应当|就)?\s*(?:是|为|[:：])"
)
# What may stand between the statement and the answer: spaces, a colon, quotes, emphasis, a box.
_LEAD = re.compile(r"^(?:[\s:：\"'“”‘’«»*_]|\\(?:boxed|fbox)\s*\{)*")
_OPTION_WORD = re.compile(r"(?i:(?:the\s+)?(?:option|choice)\s*[:：]?\s*)")
# "(B)", "(b)", "[B]", "B)", or a bare capital "B" that ends there ("B.", "B,", "B - red", "B (red)"), so
# "the answer is A bit unclear" and "the answer is I think (B)" give no letter from "A" / "I".
_LETTER = re.compile(
    rf"[(\[]([{OPTION_LETTERS}{OPTION_LETTERS.lower()}])[)\]]"
    rf"|([{OPTION_LETTERS}])(?:\)|(?=[ \t\"'”’*_]*(?:[.,;:!\]}}\n]|$))|(?=\s+[-–—:]\s)|(?=\s+\())"
)
_OPTION_ANYWHERE = re.compile(rf"\(([{OPTION_LETTERS}])\)")
_OPTION_AT_START = re.compile(rf"^[\W_]*\(([{OPTION_LETTERS}])\)")
_OPTION_AT_END = re.compile(rf"\(([{OPTION_LETTERS}])\)[\W_]*$")
_BOOLEAN = re.compile(r"(?i)\b(true|false|yes|no|valid|invalid)\b")
# Brackets, maybe quoted or comma-separated ('"]", ")"'); an opening bracket that starts a
# parenthesised remark ("(closing the stack)") is not part of the answer.
_DYCK_RUN = re.compile(r"[()\[\]{}<>](?![A-Za-z])(?:[ \t,\"'“”‘’]*[()\[\]{}<>](?![A-Za-z]))*")
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])|\n")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_MARKUP = re.compile(r"\*\*|__|`|\$")
_INPUT = re.compile(r"Input:\s*(.+?)\s*$", re.DOTALL)
_ANSWER_SPAN = 2000  # how far after a statement its answer is looked for
_NUMBER_WORDS = {
    word: i
    for i, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
        + ["twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
    )
}


def target_kind(target: Any) -> Kind:
    """The kind of answer a BBH target asks for (see the module docstring)."""
    text = " ".join(str(target).split())
    if _CHOICE_TARGET.fullmatch(text) and (text.startswith("(") or len(text) == 1):
        return "choice"
    if text.casefold() in _BOOLEAN_WORDS:
        return "boolean"
    if _NUMBER_TARGET.fullmatch(text):
        return "number"
    if _DYCK_TARGET.fullmatch(text):
        return "dyck"
    words = text.split(" ")
    if len(words) >= 2 and all(_WORD.fullmatch(w) for w in words) and words == sorted(words):
        return "words"
    return "text"


# ---------------------------------------------------------------- reading one answer of a kind
# Each reader takes the text right after an answer statement (or a box, or a last line) and
# gives (the answer as stored, the form it is compared in), or None when none is there.

Reading = tuple[str, Any]


def _read_choice(text: str, _: Sample) -> Reading | None:
    text = _LEAD.sub("", text)
    text = _OPTION_WORD.sub("", text, count=1) if _OPTION_WORD.match(text) else text
    match = _LETTER.match(text)
    if not match:
        return None
    letter = (match.group(1) or match.group(2)).upper()
    return f"({letter})", letter


def _read_boolean(text: str, _: Sample) -> Reading | None:
    text = _LEAD.sub("", text).lstrip("([")
    match = _BOOLEAN.match(text)
    return (match.group(1), match.group(1).casefold()) if match else None


def _read_number(text: str, _: Sample) -> Reading | None:
    text = _LEAD.sub("", text[:200]).lstrip(" ([")  # a number starts right there
    number = leading_number(text)
    if number is not None:
        value = to_fraction(number)
        return (number, value) if value is not None else None
    word = re.match(r"[A-Za-z]+", text)
    if word and word.group(0).casefold() in _NUMBER_WORDS:
        count = _NUMBER_WORDS[word.group(0).casefold()]
        return str(count), Fraction(count)
    return None


def _read_dyck(text: str, sample: Sample) -> Reading | None:
    match = _DYCK_RUN.match(_LEAD.sub("", text))
    if not match:
        return None
    brackets = "".join(c for c in match.group(0) if c in "()[]{}<>")
    if any(c not in _CLOSING for c in brackets):
        # The whole completed sequence: its closing part follows the input.
        given = _INPUT.search(sample.question or "")
        prefix = "".join(given.group(1).split()) if given else ""
        if not prefix or not brackets.startswith(prefix):
            return None
        brackets = brackets[len(prefix) :]
        if not brackets or any(c not in _CLOSING for c in brackets):
            return None
    return " ".join(brackets), brackets


def _answer_text(text: str) -> str:
    """The answer as written after a statement: the rest of its sentence, or when the statement
    ends its line, the next paragraph (a list of one item a line, bullets dropped)."""
    rest = text.lstrip(" \t:：*_")
    if not rest or rest.startswith("\n"):
        paragraph = rest.strip().split("\n\n", 1)[0]
        return " ".join(_BULLET.sub("", line).strip() for line in paragraph.splitlines())
    return _SENTENCE_END.split(_LEAD.sub("", rest), maxsplit=1)[0]


def _read_words(text: str, _: Sample) -> Reading | None:
    words = [w.strip("\"'“”‘’.") for w in re.split(r"[\s,;]+", _answer_text(text).casefold())]
    words = [w for w in words if any(c.isalpha() for c in w)]  # "<" between the words is no word
    return (" ".join(words), words) if words else None


def _read_text(text: str, _: Sample) -> Reading | None:
    answer = normalise_text(_answer_text(text))
    return (answer, answer) if answer else None


_READERS: dict[Kind, Callable[[str, Sample], Reading | None]] = {
    "choice": _read_choice,
    "boolean": _read_boolean,
    "number": _read_number,
    "dyck": _read_dyck,
    "words": _read_words,
    "text": _read_text,
}


def _compared(kind: Kind, target: Any, sample: Sample) -> Any:
    """The target in the form answers of its kind are compared in."""
    text = " ".join(clean_text(str(target)).split())
    if kind == "choice":
        return text.strip("()")
    if kind == "boolean":
        return text.casefold()
    if kind == "number":
        return to_fraction(text.replace("−", "-"))
    if kind == "dyck":
        return text.replace(" ", "")
    if kind == "words":
        return text.casefold().split(" ")
    return normalise_text(text)


# ---------------------------------------------------------------- finding the answer


def _prepare(output: str) -> tuple[str, list[str]]:
    """The part of the output that is the model's answer, with markup removed; notes on what was cut."""
    notes: list[str] = []
    text, thought = after_thinking(output)
    if thought:
        notes.append("read after </think>")
    text, cut = cut_at_next_question(text)
    if cut:
        notes.append("cut at an invented next question")
    text = clean_text(text)
    text = _LATEX_TEXT.sub(r"\1", text)
    return _MARKUP.sub("", text), notes


def _last_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _last_option(lines: list[str]) -> Reading | None:
    """A final standalone "(X)": the last line starts or ends with its only option."""
    if not lines:
        return None
    last = lines[-1]
    letters = set(_OPTION_ANYWHERE.findall(last))
    if len(letters) != 1:
        return None
    start, end = _OPTION_AT_START.match(last), _OPTION_AT_END.search(last)
    if not (start or end):
        return None
    if start and len(lines) > 1:
        before = _OPTION_AT_START.match(lines[-2])
        if before and before.group(1) != start.group(1):
            return None  # "(D) ...\n(E) ...": the end of an echoed list of options
    letter = letters.pop()
    return f"({letter})", letter


def _last_line(lines: list[str], kind: Kind, sample: Sample) -> Reading | None:
    """The last line when it is nothing but an answer ("Yes", "24.", "] ) }")."""
    if not lines:
        return None
    line = lines[-1].rstrip(".。!")
    reading = _READERS[kind](line, sample)
    if reading is None:
        return None
    written = _LEAD.sub("", line)
    if kind != "dyck":
        written = written.strip("()[] ")  # "(24)"
    squash = re.compile(r"[\s$,]")  # spaces and thousands separators aside, the answer is all there is
    return reading if len(squash.sub("", written)) == len(squash.sub("", reading[0])) else None


def find_answer(output: str | None, kind: Kind, sample: Sample) -> tuple[str | None, Any, str, list[str]]:
    """(the answer as stored, its compared form, the rule that found it, notes) for an output."""
    if not output:
        return None, None, "none", []
    text, notes = _prepare(output)
    read = _READERS[kind]
    for cue in reversed(list(_CUE.finditer(text))):
        reading = read(text[cue.end() : cue.end() + _ANSWER_SPAN], sample)
        if reading is not None:
            return reading[0], reading[1], "answer_is", notes
    for box in boxed_contents(text):
        reading = read(box.strip(), sample)
        if reading is not None:
            return reading[0], reading[1], "boxed", notes
    lines = _last_lines(text)
    if kind == "choice":
        reading = _last_option(lines)
        if reading is not None:
            return reading[0], reading[1], "last_option", notes
    elif kind in ("boolean", "number", "dyck"):
        reading = _last_line(lines, kind, sample)
        if reading is not None:
            return reading[0], reading[1], "last_line", notes
    return None, None, "none", notes


@register
@dataclass(frozen=True)
class BBHScorer(BaseScorer):
    """BIG-Bench Hard answers against their targets; the kind of answer is read from the target."""

    name: ClassVar[str] = "bbh"
    revision: ClassVar[int] = 3  # 3: a thought with no answer after it gives no answer

    def score(self, sample: Sample, record: Record) -> Score:
        targets = list(sample.target) if isinstance(sample.target, (list, tuple)) else [sample.target]
        kind = target_kind(targets[0])
        answer, compared, rule, notes = find_answer(record.output, kind, sample)
        explanation = "; ".join([f"{kind} answer", *notes])
        if answer is None:
            return Score(value=0.0, answer=None, rule="none", explanation=explanation)
        accepted = [_compared(kind, t, sample) for t in targets if target_kind(t) == kind]
        correct = compared is not None and compared in accepted
        return Score(value=1.0 if correct else 0.0, answer=answer, rule=rule, explanation=explanation)
