"""Matching an answer that gives an option's text without its letter (e.g. "传输层")."""

from __future__ import annotations

import re
from typing import Mapping

from proctor.scoring.text import clean_text

_NOISE = re.compile(r"[\W_]+", re.UNICODE)  # punctuation and spaces; CJK characters are kept
# The answer may wrap the option in a few words ("答案是传输层。"), not restate the whole question.
_MAX_EXTRA_CHARS = 24


def _normalise(text: str) -> str:
    return _NOISE.sub("", clean_text(text).casefold())


def match_option_text(text: str | None, options: Mapping[str, object]) -> str | None:
    """The letter whose option text the answer is, or the only option text a short answer holds.

    Used only when no letter could be extracted. Ambiguous answers (several option texts, or an
    option that is part of another) give None rather than a guess.
    """
    if not text:
        return None
    answer = _normalise(text)
    if not answer:
        return None
    texts = {letter: _normalise(str(value)) for letter, value in options.items()}
    exact = [letter for letter, option in texts.items() if option and option == answer]
    if len(exact) == 1:
        return exact[0]
    found = [
        letter
        for letter, option in texts.items()
        if len(option) >= 2 and option in answer and len(answer) - len(option) <= _MAX_EXTRA_CHARS
    ]
    # "15" inside "150" or one option inside another: the containing one is meant only if unique.
    found = [a for a in found if not any(a != b and texts[a] in texts[b] for b in found)]
    return found[0] if len(found) == 1 else None
