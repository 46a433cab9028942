"""Shared text helpers of the scorers: the one place where Unicode is normalised.

Two strengths, for two jobs:

- `clean_text` is what every text scorer applies to both the answer and the gold before it
  compares them: NFKC (full-width letters and digits, ligatures, compatibility forms) and the
  invisible format characters removed (zero-width spaces and joiners, bidi marks, embeddings and
  isolates, the BOM, soft hyphens). "Paris\\u200b", "\\u200fשלום" and "Paris\\ufeff" are the
  words they look like. Combining marks are kept: "é" is not "e".
- `skeleton` is the aggressive form the verdict grammars match on (see scoring/verdicts.py):
  per character, compatibility decomposition, combining marks and every invisible character
  dropped, and letters that only look Latin (Cyrillic "С", Greek "Ι", small capitals)
  mapped to the Latin letter. It is per character, so every character of the skeleton knows
  the character of the original it came from, and skeleton(a + b) == skeleton(a) + skeleton(b).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Characters that render as nothing or as blank space although they are letters (Hangul
# fillers, the braille blank): stripped from the skeleton like format characters.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

# Letters that look like Latin ones; the skeleton reads them as the Latin letter so a verdict
# written with them is both parsed and defused (a sample, not Unicode's whole confusables list:
# the letters of verdict keywords and their usual lookalikes).
_LOOKALIKES = {
    **dict(zip("АВЕКМНОРСТХУІЈЅԁԌԚԜҮҺ", "ABEKMHOPCTXYIJSdGQWYh")),  # Cyrillic capitals
    **dict(zip("аеорсухіјѕһԛԝɡ", "aeopcyxijshqwg")),  # Cyrillic small, Latin script g
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX")),  # Greek capitals
    **dict(zip("οιρνυχ", "oipvux")),  # Greek small
    **dict(zip("ᴀʙᴄᴅᴇɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢı", "ABCDEGHIJKLMNOPRSTUVWYZi")),  # small capitals, dotless i
    **dict(zip("ᎪᏴᏟᎠᎬᏀᎻᏆᏦᎷᎡᏚᎢᏔ", "ABCDEGHIKMRSTW")),  # Cherokee
}

_CONTROLS_ASCII = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _is_format(char: str) -> bool:
    return unicodedata.category(char) == "Cf"


@lru_cache(maxsize=4096)
def _clean_char(char: str) -> str:
    return "" if _is_format(char) else char


def strip_invisible(text: str) -> str:
    """The text without format characters (zero-width, bidi marks and isolates, BOM, soft hyphen)."""
    if text.isascii():
        return text
    return "".join(map(_clean_char, text))


def clean_text(text: str) -> str:
    """NFKC with the invisible format characters removed: what every text scorer compares."""
    # Format characters first: a zero-width space between a letter and its accent would block
    # the composition NFKC makes.
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", strip_invisible(text))


@lru_cache(maxsize=8192)
def _skeleton_char(char: str) -> str:
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]
    out = []
    for part in unicodedata.normalize("NFKD", char):
        category = unicodedata.category(part)
        if category in ("Cf", "Mn", "Me") or part in _INVISIBLE_LETTERS:
            continue
        if category == "Cc" and part not in "\t\n\r":
            continue
        out.append(_LOOKALIKES.get(part, part))
    return "".join(out)


def skeleton(text: str) -> tuple[str, list[int] | None]:
    """The text as verdict grammars read it, and for each of its characters the index of the
    original character it comes from (None: the skeleton is the text itself)."""
    if text.isascii() and not _CONTROLS_ASCII.search(text):
        return text, None
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = char if char.isascii() and char.isprintable() else _skeleton_char(char)
        if piece:
            pieces.append(piece)
            origin.extend([index] * len(piece))
    return "".join(pieces), origin
