"""The 25 instruction checkers of IFEval (Zhou et al., 2023, "Instruction-Following Evaluation for
Large Language Models", Table 1), one function each, registered by instruction id.

Each takes the response and the instruction's arguments and says whether the response follows
it. Where the paper's one-line definition leaves a detail open (what a paragraph, a bullet or a
highlight is), the rule is the one the benchmark's authors score by, which lm-evaluation-harness
and OpenCompass reuse, so that the four scores compare with theirs; the docstrings say the rule.
Counting relations are "less than" (strictly fewer) and "at least". The one deliberate
difference: `keywords:letter_frequency` counts a symbol (see there).

Every check is linear in the length of the response: a model's output is hostile input, and a
line of 10,000 `[` or `<<` must not stall the scoring stage.
"""

from __future__ import annotations

import json
import re

from proctor.scoring.ifeval import text
from proctor.scoring.ifeval.registry import checker


def _compare(count: int, relation: str, n: int) -> bool:
    return count < n if relation == "less than" else count >= n


# ---------------------------------------------------------------- keywords


@checker("keywords:existence")
def include_keywords(response: str, *, keywords: list[str]) -> bool:
    """Every keyword occurs, in any case, as a substring ("story" is found in "storyline")."""
    return all(re.search(re.escape(k), response, re.IGNORECASE) for k in keywords)


@checker("keywords:frequency")
def keyword_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword's non-overlapping occurrences in any case, as substrings, compared with `frequency`."""
    return _compare(len(re.findall(re.escape(keyword), response, re.IGNORECASE)), relation, frequency)


@checker("keywords:forbidden_words")
def forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    """None of the words occurs as a whole word, in any case ("rocky" does not contain the word "rock")."""
    return not any(re.search(rf"\b{re.escape(w)}\b", response, re.IGNORECASE) for w in forbidden_words)


@checker("keywords:letter_frequency")
def letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    """How often the letter (any case) occurs, compared with `let_frequency`. A symbol is counted as
    itself: two prompts ask for 4 hashtags ('#') and 6 exclamation marks ('!'); the benchmark's own
    code replaces a non-letter with a random letter, a verdict that changes from run to run."""
    return _compare(response.lower().count(letter.strip().lower()), let_relation, let_frequency)


# ---------------------------------------------------------------- language


@checker("language:response_language")
def response_language(response: str, *, language: str) -> bool:
    """langdetect names `language` for the response. A text with nothing to detect (no letters)
    passes, as in the benchmark's own scoring."""
    found = text.language(response)
    return found is None or found == language


# ---------------------------------------------------------------- length constraints


@checker("length_constraints:number_paragraphs")
def number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Exactly `num_paragraphs` paragraphs separated by the markdown divider `***` (with at most one
    whitespace character either side); an empty paragraph is allowed only first or last (a
    divider at the very start or end), an empty one between two dividers fails."""
    parts = re.split(r"\s?\*\*\*\s?", response)
    count = 0
    for i, part in enumerate(parts):
        if part.strip():
            count += 1
        elif 0 < i < len(parts) - 1:
            return False
    return count == num_paragraphs


@checker("length_constraints:number_words")
def number_words(response: str, *, num_words: int, relation: str) -> bool:
    """Words are runs of word characters (`\\w+`: "don't" is two), compared with `num_words`."""
    return _compare(len(re.findall(r"\w+", response)), relation, num_words)


@checker("length_constraints:number_sentences")
def number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    """Sentences as NLTK's English Punkt splits them, compared with `num_sentences`."""
    return _compare(len(text.sentences(response)), relation, num_sentences)


_FIRST_WORD_END = frozenset(".,?!'\"")


@checker("length_constraints:nth_paragraph_first_word")
def nth_paragraph_first_word(response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Exactly `num_paragraphs` non-blank paragraphs, separated by a blank line ("\\n\\n"), and the
    `nth_paragraph`-th piece between "\\n\\n"s starts with `first_word` (any case; quotes before
    it and punctuation after it ignored). The n-th piece is counted among all pieces, blank ones
    included, as the benchmark's scoring does."""
    pieces = response.split("\n\n")
    count = sum(1 for p in pieces if p.strip())
    if not 1 <= nth_paragraph <= count:
        return False
    paragraph = pieces[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].lstrip("'").lstrip('"')
    head = ""
    for char in word:
        if char in _FIRST_WORD_END:
            break
        head += char.lower()
    return count == num_paragraphs and head == first_word.lower()


# ---------------------------------------------------------------- detectable content


@checker("detectable_content:postscript")
def postscript(response: str, *, postscript_marker: str) -> bool:
    """The marker occurs (any case): "P.S." also as "p. s.", "P.P.S" also as "p. p. s"."""
    marker = postscript_marker.strip().lower()
    if marker == "p.s.":
        pattern = r"p\.\s?s\."
    elif marker == "p.p.s":
        pattern = r"p\.\s?p\.\s?s"
    else:
        pattern = re.escape(marker)
    return re.search(pattern, response.lower()) is not None


@checker("detectable_content:number_placeholders")
def number_placeholders(response: str, *, num_placeholders: int) -> bool:
    """At least `num_placeholders` square-bracket placeholders `[...]` (within one line; `[]` counts)."""
    return _bracket_pairs(response) >= num_placeholders


def _bracket_pairs(response: str) -> int:
    """Non-overlapping `[` ... `]` pairs within a line, the shortest first (what `\\[.*?\\]` finds),
    counted in one pass."""
    count = 0
    for line in response.split("\n"):
        pos = line.find("[")
        while pos >= 0:
            close = line.find("]", pos + 1)
            if close < 0:
                break  # no `]` after this `[`, so none after any later one either
            count += 1
            pos = line.find("[", close + 1)
    return count


# ---------------------------------------------------------------- detectable format

_STAR_BULLET = re.compile(r"^\s*\*[^*].*$", re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)


@checker("detectable_format:number_bullet_lists")
def number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Exactly `num_bullets` markdown bullets: lines starting (after spaces) with `*` not followed
    by another `*` (so `**bold**` is no bullet), or with `-`."""
    return len(_STAR_BULLET.findall(response)) + len(_DASH_BULLET.findall(response)) == num_bullets


@checker("detectable_format:title")
def title(response: str) -> bool:
    """A title in double angular brackets on one line, `<<like this>>`, not blank inside."""
    for line in response.split("\n"):
        # The longest `<<...>>` of the line from its first `<<` (one match per line, found without
        # the quadratic backtracking a regex needs on a line of many `<<`).
        start, end = line.find("<<"), line.rfind(">>")
        if start >= 0 and end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@checker("detectable_format:constrained_response")
def constrained_response(response: str) -> bool:
    """One of the offered answers occurs word for word: "My answer is yes.", "... no." or "... maybe."."""
    return any(option in response for option in _OPTIONS)


_HIGHLIGHT = re.compile(r"\*[^\n*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n*]*\*\*")


@checker("detectable_format:number_highlighted_sections")
def number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """At least `num_highlights` markdown highlights on one line, `*like this*` or `**like this**`,
    not blank inside."""
    single = sum(1 for h in _HIGHLIGHT.findall(response) if h.strip("*").strip())
    double = sum(1 for h in _DOUBLE_HIGHLIGHT.findall(response) if h[2:-2].strip())
    return single + double >= num_highlights


@checker("detectable_format:multiple_sections")
def multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least `num_sections` section marks: the splitter word (as written, e.g. "SECTION")
    followed by a number, `SECTION 1`."""
    marks = re.split(rf"\s?{re.escape(section_spliter)}\s?\d+\s?", response)
    return len(marks) - 1 >= num_sections


@checker("detectable_format:json_format")
def json_format(response: str) -> bool:
    """The whole response parses as JSON, once a markdown code fence (```json ... ```) around it is removed."""
    value = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        value = value.removeprefix(fence)
    value = value.removesuffix("```").strip()
    try:
        json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return False
    return True


# ---------------------------------------------------------------- combination


@checker("combination:repeat_prompt")
def repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    """The response starts with the request, word for word (any case)."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


@checker("combination:two_responses")
def two_responses(response: str) -> bool:
    """Two different responses separated by six asterisks `******`; a blank piece is allowed only
    before the first or after the last separator."""
    pieces = response.split("******")
    kept = []
    for i, piece in enumerate(pieces):
        if piece.strip():
            kept.append(piece.strip())
        elif 0 < i < len(pieces) - 1:
            return False
    return len(kept) == 2 and kept[0] != kept[1]


# ---------------------------------------------------------------- change case


@checker("change_case:english_capital")
def english_capital(response: str) -> bool:
    """All cased letters are capitals (`str.isupper`) and the text is English (langdetect; a text
    with nothing to detect passes)."""
    return response.isupper() and text.language(response) in ("en", None)


@checker("change_case:english_lowercase")
def english_lowercase(response: str) -> bool:
    """All cased letters are lower case (`str.islower`) and the text is English (langdetect; a text
    with nothing to detect passes)."""
    return response.islower() and text.language(response) in ("en", None)


@checker("change_case:capital_word_frequency")
def capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    """Words all in capitals (NLTK word tokens that are `isupper`: "I" counts, "N'T" too), compared
    with `capital_frequency`."""
    return _compare(sum(1 for w in text.word_tokens(response) if w.isupper()), capital_relation, capital_frequency)


# ---------------------------------------------------------------- start / end


@checker("startend:end_checker")
def end_checker(response: str, *, end_phrase: str) -> bool:
    """The response ends with the phrase (any case; surrounding quotes of the whole response ignored)."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


@checker("startend:quotation")
def quotation(response: str) -> bool:
    """The whole response (spaces around it aside) is wrapped in double quotation marks."""
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


# ---------------------------------------------------------------- punctuation


@checker("punctuation:no_comma")
def no_comma(response: str) -> bool:
    """No comma "," anywhere (other scripts' commas, such as "，", are not checked)."""
    return "," not in response
