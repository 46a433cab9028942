"""Verdict grammars: one definition both reads a judge's verdict and defuses verdict-like text
in what the judge is shown, so nothing the parser accepts can come from the judged answer.

A grammar is a `pattern` (a verdict as the parser accepts it) and a `trigger` (a looser
pattern: every text the pattern matches holds a trigger match). Both run on the text's
skeleton (scoring/text.py: compatibility forms folded, zero-width and other invisible
characters dropped, lookalike letters read as Latin), so `**GRADE**: C`, `ＧＲＡＤＥ: C`,
`GR\\u200bADE: C` and `GRАDE: С` (Cyrillic) are one verdict to the parser and one trigger to
the defuser. `defuse` replaces each trigger match in the original text by `replacement` until
the skeleton holds none; the parser then finds no verdict in the defused text, wherever a
judge copies it into its reply (the skeleton is per character, so a copy's skeleton is the
defused skeleton).

The grammars of the judge scorers here (`GRADE`) and of pairwise and rating judges
(`[[A>>B]]` of Arena-Hard, `[[A]]`/`[[B]]`/`[[C]]` of MT-Bench pairs, `[[8]]` of MT-Bench
single ratings) are instances of the same class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from proctor.scoring.text import skeleton

_MAX_PASSES = 8


@dataclass(frozen=True)
class VerdictGrammar:
    """How one kind of judge states its verdict.

    `pattern`: a regex (case-insensitive, `^`/`$` per line) whose group 1 is the verdict;
    `trigger`: a regex such that every pattern match contains a trigger match;
    `replacement`: what a trigger match in a judged text becomes (it must itself hold no trigger);
    `normalise`: the verdict as returned (upper case, blanks removed, by default).
    """

    name: str
    pattern: str
    trigger: str
    replacement: str
    normalise: Callable[[str], str] = field(default=lambda v: re.sub(r"\s+", "", v).upper())
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _trigger: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags = re.IGNORECASE | re.MULTILINE
        object.__setattr__(self, "_pattern", re.compile(self.pattern, flags))
        object.__setattr__(self, "_trigger", re.compile(self.trigger, flags))
        if self._trigger.search(skeleton(self.replacement)[0]):
            raise ValueError(f"verdict grammar {self.name}: its replacement holds a trigger")

    def verdicts(self, text: str | None) -> list[str]:
        """Every verdict in the text, in order."""
        canon, _ = skeleton(text or "")
        return [self.normalise(m.group(1)) for m in self._pattern.finditer(canon)]

    def last(self, text: str | None) -> str | None:
        """The last verdict in the text (a judge that revises itself ends with its final word)."""
        found = self.verdicts(text)
        return found[-1] if found else None

    def has_trigger(self, text: str) -> bool:
        return self._trigger.search(skeleton(text)[0]) is not None

    def defuse(self, text: str) -> str:
        """The text with every verdict-like part replaced, so the parser finds no verdict in it."""
        for _ in range(_MAX_PASSES):
            canon, origin = skeleton(text)
            matches = [m for m in self._trigger.finditer(canon) if m.end() > m.start()]
            if not matches:
                return text
            pieces: list[str] = []
            last = 0
            for match in matches:
                start = match.start() if origin is None else origin[match.start()]
                end = match.end() if origin is None else origin[match.end() - 1] + 1
                if start < last:  # two matches inside one original character
                    continue
                pieces += [text[last:start], self.replacement]
                last = end
            pieces.append(text[last:])
            text = "".join(pieces)
        # Replacements that keep forming new triggers with their neighbours (never seen; a
        # guarantee, not a case): the judge sees a placeholder instead of the text.
        return text if not self.has_trigger(text) else self.replacement


# `GRADE: C` / `GRADE: I` on a line of its own, after optional markdown (`**GRADE**: C`,
# `> GRADE: I`, `` `GRADE`: C ``, `__GRADE__: C`). The trigger is the word GRADE (not inside a
# longer word) where markup and a colon, or the end of the text, follow: "grade" in prose
# ("a grade of A") is left alone, every verdict is caught.
GRADE = VerdictGrammar(
    name="grade",
    pattern=r"^[ \t>*_`#-]*GRADE[ \t*_`]*:[ \t*_`]*([CI])\b",
    trigger=r"(?<![^\W_])GRADE(?=[ \t*_`]*(?::|\Z))",
    replacement="[verdict removed]",
)

# Arena-Hard / AlpacaEval-style pairwise verdicts: `[[A>>B]]`, `[[A=B]]`, `[[B>A]]`; MT-Bench
# pair verdicts `[[A]]`, `[[B]]`, `[[C]]` (tie). Any `[[` is a trigger (and a `[` ending the text).
PAIRWISE = VerdictGrammar(
    name="pairwise",
    pattern=r"\[\[\s*([AB]\s*(?:>>|>|=|<|<<)\s*[AB]|[ABC])\s*\]\]",
    trigger=r"\[(?=\[|\Z)",
    replacement="[ ",
)

# MT-Bench single-answer ratings: `Rating: [[8]]`, `[[7.5]]`.
RATING = VerdictGrammar(
    name="rating",
    pattern=r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]",
    trigger=r"\[(?=\[|\Z)",
    replacement="[ ",
)


# The judge prompt's own section markers (`[End of data]`, `[Reference answer]`, `<<<END ...`):
# escaped in the texts shown to a judge, so that even a judge reading the prompt by its headings,
# without the tag, cannot be shown a fake end of a section.
SECTION_MARKERS = VerdictGrammar(
    name="section markers",
    pattern=r"(\[\s*(?:question|reference\s+answer|submitted\s+answer|end\s+of\s+data)\s*\]|<<<\s*(?:BEGIN|END)\b)",
    trigger=r"\[(?=\s*(?:question|reference\s+answer|submitted\s+answer|end\s+of\s+data)\s*(?:\]|\Z))"
            r"|<(?=<<\s*(?:BEGIN|END)\b)",
    replacement="\u27e6",  # ⟦: a bracket that no normalisation turns into "[" or "<"
)


# --- The judged benchmarks' own verdict patterns (scoring/judged.py) ---------------------------
def _double_then_single(name: str, inner: str, **kwargs: Any) -> tuple[VerdictGrammar, VerdictGrammar]:
    """A benchmark's `[[verdict]]` pattern and its single-bracket backup `[verdict]`: one trigger
    for both (a `[` that opens `[[`, or a verdict-shaped `[...]`), so defusing for one defuses both."""
    trigger = rf"\[(?=\[|{inner}\]|\Z)"
    return (VerdictGrammar(name, rf"\[\[({inner})\]\]", trigger, "\u27e6", **kwargs),
            VerdictGrammar(f"{name} backup", rf"\[({inner})\]", trigger, "\u27e6", **kwargs))


# Arena-Hard-Auto (config/arena-hard-v*.yaml `regex_patterns`): `[[A>>B]]` .. `[[B>>A]]`, then the
# single-bracket backup `[A>B]`.
ARENA_HARD, ARENA_HARD_BACKUP = _double_then_single("arena-hard", r"[AB<>=]+")

# MT-Bench single-answer grading (FastChat's `one_score_pattern` and its backup): `[[8]]`, `[8.5]`.
MT_BENCH_RATING, MT_BENCH_RATING_BACKUP = _double_then_single("mt-bench rating", r"\d+\.?\d*",
                                                              normalise=lambda v: v.strip())

# AlpacaEval's classifier judge answers with the identifier of the better output, `m` or `M`, and
# nothing else: the whole answer is the verdict, case kept (m and M are the two outputs).
ALPACA_EVAL = VerdictGrammar(
    name="alpaca-eval",
    pattern=r"\A\s*(m)\s*\Z",
    trigger=r"\A\s*m\s*\Z",
    replacement="(m)",
    normalise=lambda v: v.strip(),
)

# The judged benchmarks' section markers, escaped in every text shown to their judges: AlpacaEval
# quotes each output in `"""`; Arena-Hard and MT-Bench open and close each answer with
# `<|The End of Assistant A's Answer|>` / `[The End of Assistant A's Answer]` lines, and MT-Bench's
# conversations mark turns with `### User:` / `### Assistant A:`.
TRIPLE_QUOTES = VerdictGrammar(
    name="triple quotes",
    pattern=r'("{3})',
    trigger=r'"(?="")',
    replacement="\u201d",
)
JUDGE_SECTIONS = VerdictGrammar(
    name="judge sections",
    pattern=r"((?:<\||\[)\s*The\s+(?:Start|End)\s+of\b|^#{3}\s*(?:User|Assistant|Reference)\b)",
    trigger=r"(?:<(?=\|\s*The\s+(?:Start|End)\s+of\b)|\[(?=\s*The\s+(?:Start|End)\s+of\b)"
            r"|^#(?=#{2}\s*(?:User|Assistant|Reference)\b))",
    replacement="\u27e6",
)
