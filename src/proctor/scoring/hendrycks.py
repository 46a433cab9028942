"""String normalisation of MATH answers, after Hendrycks et al.'s `is_equiv` (the MATH paper's checker).

Used by the `math_equiv` scorer as its fallback when Math-Verify cannot decide: two answers
are equivalent when their normalised strings are equal. The normalisation follows the
reference checker (strip `\\left`/`\\right`, `\\!`, `^\\circ`, `\\$`, `\\%`, a trailing unit in
`\\text{ ...}`, a short `x = ` prefix; `\\dfrac`/`\\tfrac` -> `\\frac`; `\\frac12` -> `\\frac{1}{2}`,
`\\sqrt2` -> `\\sqrt{2}`, `a/b` -> `\\frac{a}{b}`, `.5` -> `0.5`, `0.5` -> `\\frac{1}{2}`; no spaces)
and adds a few forms MATH golds use: `\\text{(C)}` and `(C)` -> `C`, `\\text{...}`, `\\mbox{...}`,
`\\mathrm{...}` unwrapped, `\\displaystyle` dropped, a trailing full stop dropped.
"""

from __future__ import annotations

import re

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf)\s*\{([^{}]*)\}")
_TRAILING_UNIT = re.compile(r"\\(?:text|mbox)\s*\{\s+[^{}]*\}\s*$")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?")
_SHORT_LHS = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=\S)")
_CHOICE = re.compile(r"^\(?([A-Ja-j])\)?$")
_SIMPLE_FRACTION = re.compile(r"^(-?\d+)/(\d+)$")
_ONE_TOKEN_ARG = re.compile(r"\\(frac|sqrt)\s*(\d|[a-zA-Z](?![a-zA-Z]))")


def _fix_short_commands(text: str) -> str:
    r"""`\frac12` -> `\frac{1}{2}`, `\frac1b` -> `\frac{1}{b}`, `\sqrt3` -> `\sqrt{3}` (one-character arguments)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        match = _ONE_TOKEN_ARG.match(text, i) if text[i] == "\\" else None
        if match is None:
            out.append(text[i])
            i += 1
            continue
        command = match.group(1)
        out.append(f"\\{command}{{{match.group(2)}}}")
        i = match.end()
        if command == "frac":
            # The denominator: one character, or a braced group that is kept as it is.
            while i < len(text) and text[i] == " ":
                i += 1
            if i < len(text) and text[i] not in "{\\":
                out.append(f"{{{text[i]}}}")
                i += 1
    return "".join(out)


def normalize_answer(text: str) -> str:
    """The canonical string of a MATH answer (see the module docstring); "" for an empty one."""
    s = text.strip().replace("\n", "").replace("\\!", "")
    s = s.replace("\\displaystyle", "")
    # "\$" first: "$" alone may delimit maths.
    s = s.replace("\\$", "").strip().strip("$")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = _DEGREES.sub("", s)
    s = _TRAILING_UNIT.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    # Unwrap \text{...} (innermost first, so nested wrappers come off too).
    previous = None
    while previous != s:
        previous, s = s, _TEXT_WRAPPER.sub(r"\1", s)
    s = s.strip().rstrip(".").strip()
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    s = _SHORT_LHS.sub("", s) if len(s.split("=")) == 2 else s
    s = _fix_short_commands(s)
    s = s.replace(" ", "").replace("\\,", "").replace("\\;", "").replace("\\:", "")
    if s == "0.5":
        s = "\\frac{1}{2}"
    fraction = _SIMPLE_FRACTION.match(s)
    if fraction:
        s = f"\\frac{{{fraction.group(1)}}}{{{fraction.group(2)}}}"
    choice = _CHOICE.match(s)
    if choice:
        s = choice.group(1).upper()
    return s


def is_equiv(a: str | None, b: str | None) -> bool:
    """Whether two answers normalise to the same non-empty string (None is never equivalent)."""
    if a is None or b is None:
        return False
    try:
        na, nb = normalize_answer(a), normalize_answer(b)
    except Exception:  # a malformed answer: compare as written
        return a.strip() == b.strip() and bool(a.strip())
    return bool(na) and na == nb
