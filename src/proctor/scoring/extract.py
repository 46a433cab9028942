"""Pull the chosen option letter out of a free-form (chat) model answer, Chinese or English.

Design: the text is normalised once (full-width -> ASCII, markdown and LaTeX
wrappers removed, reasoning in <think> tags dropped), then a short list of
*tiers* is tried in order, from the strongest evidence to the weakest:

1. the whole output is one letter            "B", "(b)", "Ｂ。", "选项B"
2. an explicit answer statement              "答案是B", "The answer is (B)", "选B", "\\boxed{B}"
3. a conclusion about one option             "B是正确的", "Option B is correct", "因此B。"
4. the output starts with an option          "B. Paris", "B) ...", "(B) ..."
5. exactly one bracketed letter anywhere     "... Paris (B)."
6. exactly one stand-alone capital letter    "It must be C since ..."

In tiers 2 and 3 the *last* statement wins, because chat models reason first
("A is tempting ... B fails ...") and conclude last. Tiers 5 and 6 are guesses,
so they answer only when they see one distinct letter: an ambiguous output
scores as no answer (None), never as a lucky one.

`find_choice` also says which tier fired (its name is the score's `rule`);
`extract_choice` gives the letter only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, NamedTuple

from proctor.reasoning import split_answer
from proctor.scoring.text import clean_text

_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_MARKUP = re.compile(r"[*`$#]")
_SPACES = re.compile(r"\s+")
# Punctuation that may close a sentence right after an answer letter.
_END = r"[.,;:!?。、)\]】]"


@dataclass(frozen=True)
class _Tiers:
    whole: re.Pattern[str]
    explicit: tuple[re.Pattern[str], ...]
    conclusion: tuple[re.Pattern[str], ...]
    start: re.Pattern[str]
    bracketed: re.Pattern[str]
    standalone: re.Pattern[str]


class Choice(NamedTuple):
    """An extracted option letter and the tier that found it."""

    letter: str
    rule: str  # "whole", "explicit", "conclusion", "start", "bracketed" or "standalone"


def _validate(labels: str) -> str:
    letters = "".join(labels)
    if not letters or not all("A" <= c <= "Z" for c in letters) or len(set(letters)) != len(letters):
        raise ValueError(f"labels must be distinct capital letters like 'ABCD', got {labels!r}")
    return letters


@lru_cache(maxsize=32)
def _tiers(labels: str) -> _Tiers:
    up = f"[{labels}]"
    lo = f"[{labels.lower()}]"
    # An upper-case letter must stand alone ("B", not the "B" of "Because")
    # ("A.I." is an abbreviation, not option A).
    upper = rf"(?<![A-Za-z0-9])({up})(?![A-Za-z0-9])(?!\.[A-Za-z])"
    # A lower-case letter is only trusted when nothing word-like follows it, so
    # "the answer is a cat" never reads as option A.
    lower = rf"(?<![A-Za-z0-9])({lo})(?=\s*(?:{_END}|$))"
    # "A, B, C or D" and "A/B" are lists of options (an echoed instruction), not an answer.
    # After a comma the next letter is a list item only when it ends like one: in "B, A
    # completely randomized design ..." and "C，B项错误" the text goes on to discuss another
    # option (or uses the article "A"), and the first letter is the answer.
    # A letter with a colon after the comma is a label that opens a remark on that option
    # ("正确答案是 D，A：..."), not a list item, so ":" does not end an item.
    item_end = r"[ \t]*(?:[,、/.;!?。)\]】\n]|or\b|and\b|或|和|及|都|均|两|三|四|$)"
    not_list = (
        rf"(?!\s*(?:/|or\b|and\b|或|和)\s*{up}(?![A-Za-z0-9])"
        rf"|\s*[,、]\s*{up}(?![A-Za-z0-9]){item_end})"
    )
    letter = rf"[(\[【]?\s*(?:{upper}|{lower}){not_list}"

    cn_answer = (
        r"答案?\s*[】\]]?\s*(?:应该|应当|应|可能|就|也|肯定|一定|只能)?\s*"
        r"(?:是|为|选|选择)?\s*:?\s*(?:选项|选)?\s*" + letter
    )
    # "不选A" / "不应该选A" / "没有选A" say what the answer is not.
    cn_pick = (
        r"(?<!不)(?<!不应)(?<!不应该)(?<!不能)(?<!不会)(?<!没)(?<!没有)(?<!未)"
        r"(?:选择|选)\s*:?\s*(?:答案|选项)?\s*" + letter
    )
    en_answer = (
        r"(?i:\b(?:answer|option|choice)\b"
        r"(?:\s+(?:is|would\s+be|should\s+be|must\s+be|will\s+be)"
        r"(?:\s+(?:clearly|therefore|thus|definitely|probably|likely|most\s+likely))?\s*:?"
        r"|\s*[:=]))"
        r"\s*(?i:(?:option|choice|letter)\s*)?" + letter
    )
    en_pick = (
        r"(?<!not\s)(?<!n't\s)(?<!never\s)"
        r"(?i:\b(?:choose|chose|select|selected|pick|picked|go\s+with|going\s+with))"
        r"\s*:?\s*(?i:(?:option|choice|answer)\s+)?[(\[]?\s*" + upper + not_list
    )
    boxed = r"\\boxed\s*\{\s*" + letter

    cn_correct = (
        rf"(?:选项)?\s*{upper}\s*(?:项|选项)?\s*(?:是|为|才是|最)?\s*"
        r"(?:正确|对的|符合题意|最合适|最佳|最恰当)"
    )
    cn_therefore = (
        r"(?:所以|因此|故|综上所述|综上|因而|由此可知|可知|即)\s*[,:]?\s*(?:选项)?\s*"
        + upper
        + rf"(?=\s*(?:{_END}|$|项|选项|正确|是正确))"
    )
    en_correct = (
        rf"(?i:(?:option|choice)\s+)?{upper}\s+(?i:is|would\s+be)\s+(?i:the\s+)?"
        r"(?i:correct|right|best|answer)\b"
    )
    en_therefore = (
        r"(?i:\b(?:therefore|thus|hence|so))\s*,?\s*(?i:(?:option|choice)\s+)?[(\[]?\s*"
        + upper
        + rf"(?=\s*(?:{_END}|$))"
    )

    whole = (
        r"^\s*(?:选项|答案|(?i:option|answer|choice))?\s*:?\s*[(\[【]?\s*"
        rf"({up}|{lo})\s*[)\]】]?\s*[.。!]?\s*$"
    )
    start = (
        r"^\s*(?:选项|(?i:option|choice)\s+)?(?:"
        rf"[(\[【]\s*({up})\s*[)\]】]"
        rf"|({up})(?:\s*[):、,;。\]】]|\.(?![A-Za-z0-9])|\s*$|[ \t]*\n|\s+(?=[^\x00-\x7f]))"
        rf"|[(\[【]\s*({lo})\s*[)\]】]|({lo})\))"
    )
    return _Tiers(
        whole=re.compile(whole),
        explicit=tuple(re.compile(p) for p in (cn_answer, cn_pick, en_answer, en_pick, boxed)),
        conclusion=tuple(re.compile(p) for p in (cn_correct, cn_therefore, en_correct, en_therefore)),
        start=re.compile(start),
        bracketed=re.compile(rf"[(\[【]\s*({up})\s*[)\]】]"),
        standalone=re.compile(upper),
    )


def _letter(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g).upper()


def _last(patterns: Iterable[re.Pattern[str]], text: str) -> str | None:
    """The letter of the match that starts last in the text, over all patterns."""
    best: tuple[int, str] | None = None
    for pattern in patterns:
        for match in pattern.finditer(text):
            if best is None or match.start() >= best[0]:
                best = (match.start(), _letter(match))
    return best[1] if best else None


def _unique(letters: Iterable[str]) -> str | None:
    distinct = set(letters)
    return distinct.pop() if len(distinct) == 1 else None


_NEGATION = re.compile(
    r"(?:\bnot|n't|\bnever|不是|不选|不应选|排除|除了|除)\s*(?:option\s+|选项)?$", re.IGNORECASE
)
# Longer than any text _NEGATION can match (whitespace runs are one character
# after _normalise); searching only this far back keeps tier 6 linear in the text.
_NEGATION_REACH = 32
_WORD_AFTER_I = re.compile(r"\s+[a-z]|'")  # "I think", "I'm"
_WORD_AFTER_A = re.compile(r"[ \t]+[A-Za-z]")  # "A cat"


def _negated(text: str, match: re.Match[str]) -> bool:
    """True for a letter the text rules out: "not A", "不是A", "排除A"."""
    start = match.start()
    return _NEGATION.search(text, max(0, start - _NEGATION_REACH), start) is not None


def _used_as_word(text: str, match: re.Match[str]) -> bool:
    """True for the English words "A" and "I" ("A cat is ...", "I think ..."), not options."""
    letter = match.group(1)
    if letter == "I":
        return _WORD_AFTER_I.match(text, match.end()) is not None
    if letter == "A" and _WORD_AFTER_A.match(text, match.end()):
        # Only a sentence-initial "A" is read as the article; mid-sentence
        # "it is A because" names the option. Index arithmetic, not slices: a
        # long output has many candidate letters.
        start = i = match.start()
        while i > 0 and text[i - 1].isspace():
            i -= 1
        return i == 0 or text[i - 1] in ".!?。!?:" or "\n" in text[i:start]
    return False


def answer_part(text: str) -> str:
    """The answer part (proctor.reasoning.split_answer): "" for a thought with no answer."""
    split = split_answer(text)
    return text if split.reasoning is None else split.answer or ""


def _normalise(text: str) -> str:
    text = clean_text(answer_part(text))  # "Ｂ" -> "B", "：" -> ":", zero-width marks gone
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _MARKUP.sub("", text)
    # One whitespace character per run: the patterns chain several optional \s*, which
    # would otherwise backtrack exponentially on long runs of blanks.
    return _SPACES.sub(lambda m: "\n" if "\n" in m.group() else " ", text)


def find_choice(text: str | None, labels: str) -> Choice | None:
    """The option letter a model chose in `text` and the tier that found it; None when it
    names none of `labels` (or is ambiguous)."""
    letters = _validate(labels)
    if not text:
        return None
    tiers = _tiers(letters)
    text = _normalise(text)

    whole = tiers.whole.match(text)
    if whole:
        return Choice(_letter(whole), "whole")
    for rule, group in (("explicit", tiers.explicit), ("conclusion", tiers.conclusion)):
        found = _last(group, text)
        if found:
            return Choice(found, rule)
    start = tiers.start.match(text)
    if start:
        return Choice(_letter(start), "start")
    bracketed = _unique(m.group(1) for m in tiers.bracketed.finditer(text))
    if bracketed:
        return Choice(bracketed, "bracketed")
    standalone = _unique(
        m.group(1)
        for m in tiers.standalone.finditer(text)
        if not (_used_as_word(text, m) or _negated(text, m))
    )
    return Choice(standalone, "standalone") if standalone else None


def extract_choice(text: str | None, labels: str) -> str | None:
    """The option letter a model chose in `text`, or None when it names none (or is ambiguous)."""
    found = find_choice(text, labels)
    return found.letter if found else None
