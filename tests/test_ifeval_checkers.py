"""IFEval's 25 instruction checkers against responses whose verdicts were worked out by hand.

Each case gives an instruction, a response and its strict and loose verdicts, with the reason.
Loose tries the response, without its first line, without its last, without both, and each of
those with every `*` removed; a blank text follows nothing. The verdicts are written here, not
asked of the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from proctor.scoring.ifeval import CHECKERS, bind, follows, follows_loosely, loose_variants


@dataclass(frozen=True)
class Case:
    instruction: str
    response: str
    strict: bool
    loose: bool
    why: str
    kwargs: dict[str, Any] = field(default_factory=dict)


KW_EXIST = {"keywords": ["correlated", "experiencing"]}
END = {"end_phrase": "Is there anything else I can help with?"}
FIRST = {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "weekend"}

CASES = [
    # keywords:existence: every keyword, any case, as a substring
    Case("keywords:existence", "We are EXPERIENCING a correlated rise.", True, True, "both, any case", KW_EXIST),
    Case("keywords:existence", "We are experiencing a rise.", False, False, "no 'correlated' anywhere", KW_EXIST),
    Case("keywords:existence", "Uncorrelated yet experiencing.", True, True, "'correlated' inside 'Uncorrelated'",
         KW_EXIST),
    Case("keywords:existence", "corre*lated and experiencing", False, True, "'correlated' once unstarred", KW_EXIST),
    # keywords:frequency: substring occurrences, any case
    Case("keywords:frequency", "A story. Another Story.", True, True, "2 >= 2",
         {"keyword": "story", "frequency": 2, "relation": "at least"}),
    Case("keywords:frequency", "storyline stories", False, False, "'storyline' has it, 'stories' not: 1 < 2",
         {"keyword": "story", "frequency": 2, "relation": "at least"}),
    Case("keywords:frequency", "Here is my story:\nThe story ends.", False, True,
         "2 is not less than 2; without the first line 1 is",
         {"keyword": "story", "frequency": 2, "relation": "less than"}),
    # keywords:forbidden_words: whole words only
    Case("keywords:forbidden_words", "Rocky roads and rockets.", True, True, "'rock' only inside longer words",
         {"forbidden_words": ["rock"]}),
    Case("keywords:forbidden_words", "We ROCK.", False, False, "the word, in capitals", {"forbidden_words": ["rock"]}),
    Case("keywords:forbidden_words", "Let's rock!\nCalm song.", False, True, "only the first line has it",
         {"forbidden_words": ["rock"]}),
    # keywords:letter_frequency: any case; a symbol is counted as itself
    Case("keywords:letter_frequency", "Quick quiz", True, True, "two q's",
         {"letter": "q", "let_frequency": 2, "let_relation": "at least"}),
    Case("keywords:letter_frequency", "Queue", False, False, "one q",
         {"letter": "q", "let_frequency": 2, "let_relation": "at least"}),
    Case("keywords:letter_frequency", "#a #b #c #d", True, True, "four '#' (the prompt asks for 4 hashtags)",
         {"letter": "#", "let_frequency": 4, "let_relation": "at least"}),
    Case("keywords:letter_frequency", "Here we go\nno", False, True, "3 e's, not fewer than 3; 'no' has none",
         {"letter": "e", "let_frequency": 3, "let_relation": "less than"}),
    # language:response_language
    Case("language:response_language", "Bonjour tout le monde, comment allez-vous aujourd'hui?", True, True, "French",
         {"language": "fr"}),
    Case("language:response_language", "This is clearly an English sentence about the weather today.", False, False,
         "English, not French", {"language": "fr"}),
    Case("language:response_language",
         "Here is my answer in the language you asked for, as requested.\nBonjour tout le monde.", False, True,
         "mostly English; the last line alone is French", {"language": "fr"}),
    Case("language:response_language", "12345 67890", True, True, "nothing to detect passes (the benchmark's rule)",
         {"language": "fr"}),
    # length_constraints:number_paragraphs: pieces between `***`
    Case("length_constraints:number_paragraphs", "First.\n***\nSecond.", True, True, "two pieces",
         {"num_paragraphs": 2}),
    Case("length_constraints:number_paragraphs", "***\nFirst.\n***\nSecond.\n***", True, True,
         "blank first and last pieces do not count", {"num_paragraphs": 2}),
    Case("length_constraints:number_paragraphs", "First.\n***\n***\nSecond.", False, False,
         "a blank piece between two dividers, in every variant", {"num_paragraphs": 2}),
    Case("length_constraints:number_paragraphs", "Sure:\n***\nA\n***\nB", False, True,
         "3 pieces; without 'Sure:' the first is blank", {"num_paragraphs": 2}),
    # length_constraints:number_words: \w+ runs
    Case("length_constraints:number_words", "Hi there, friend.", True, True, "3 < 5",
         {"num_words": 5, "relation": "less than"}),
    Case("length_constraints:number_words", "Don't do it now", False, False, "Don, t, do, it, now: 5, not < 5",
         {"num_words": 5, "relation": "less than"}),
    Case("length_constraints:number_words", "Here are many words for you:\nYes.", False, True, "7 words; 'Yes.' is 1",
         {"num_words": 3, "relation": "less than"}),
    # length_constraints:number_sentences: Punkt, English
    Case("length_constraints:number_sentences", "Dr. Smith arrived.", True, True, "'Dr.' is an abbreviation: 1 < 2",
         {"num_sentences": 2, "relation": "less than"}),
    Case("length_constraints:number_sentences", "It rained. We stayed in.", False, False, "2, not < 2",
         {"num_sentences": 2, "relation": "less than"}),
    Case("length_constraints:number_sentences", "The sun rose. The birds sang. The day began.", True, True, "3 >= 3",
         {"num_sentences": 3, "relation": "at least"}),
    Case("length_constraints:number_sentences", "Here you go.\nIt is done.", False, True, "2; the last line is 1",
         {"num_sentences": 2, "relation": "less than"}),
    # length_constraints:nth_paragraph_first_word: pieces between "\n\n"
    Case("length_constraints:nth_paragraph_first_word", "Hello there.\n\nWeekend plans are great.", True, True,
         "2 paragraphs, the second starts 'Weekend'", FIRST),
    Case("length_constraints:nth_paragraph_first_word", 'Hello.\n\n"Weekend," she said.', True, True,
         "the quote before and the comma after the word are ignored", FIRST),
    Case("length_constraints:nth_paragraph_first_word", "Hello.\n\n\n\nWeekend plans.", False, False,
         "2 paragraphs, but the 2nd piece between '\\n\\n's is blank", FIRST),
    Case("length_constraints:nth_paragraph_first_word", "Hello.\n\n**Weekend** plans.", False, True,
         "'**weekend**' is not 'weekend'; without the stars it is", FIRST),
    # detectable_content:postscript
    Case("detectable_content:postscript", "Thanks.\nP.S. See you.", True, True, "P.S.", {"postscript_marker": "P.S."}),
    Case("detectable_content:postscript", "Thanks.\np. s. see you", True, True, "'p. s.' in any case",
         {"postscript_marker": "P.S."}),
    Case("detectable_content:postscript", "Thanks. PS see you", False, False, "no dots", {"postscript_marker": "P.S."}),
    Case("detectable_content:postscript", "Bye.\nP.P.S More.", True, True, "P.P.S", {"postscript_marker": "P.P.S"}),
    Case("detectable_content:postscript", "Bye. P.S. more", False, False, "P.S. is not P.P.S",
         {"postscript_marker": "P.P.S"}),
    Case("detectable_content:postscript", "Bye. P*.S. later", False, True, "'P.S.' once the star is gone",
         {"postscript_marker": "P.S."}),
    # detectable_content:number_placeholders: [..] within a line
    Case("detectable_content:number_placeholders", "Dear [name], see [address].", True, True, "2 >= 2",
         {"num_placeholders": 2}),
    Case("detectable_content:number_placeholders", "Dear [name], see [address.", False, False, "1 closed",
         {"num_placeholders": 2}),
    Case("detectable_content:number_placeholders", "[a\nb] and [c]", False, False, "a pair across lines is none",
         {"num_placeholders": 2}),
    Case("detectable_content:number_placeholders", "[] []", True, True, "empty brackets count",
         {"num_placeholders": 2}),
    # detectable_format:number_bullet_lists: lines starting with `*` (not `**`) or `-`
    Case("detectable_format:number_bullet_lists", "* one\n* two", True, True, "2", {"num_bullets": 2}),
    Case("detectable_format:number_bullet_lists", "- one\n- two\n* three", False, True, "3; without the last line 2",
         {"num_bullets": 2}),
    Case("detectable_format:number_bullet_lists", "**Bold** intro\n* one\n* two", True, True, "'**' starts no bullet",
         {"num_bullets": 2}),
    Case("detectable_format:number_bullet_lists", "* one", False, False, "1", {"num_bullets": 2}),
    # detectable_format:title
    Case("detectable_format:title", "<<My Poem>>\nRoses are red.", True, True, "a title"),
    Case("detectable_format:title", "<< >>\nText", False, False, "blank inside"),
    Case("detectable_format:title", "<<Title\n>>", False, False, "not on one line"),
    # detectable_format:constrained_response: one of the three phrases, as written
    Case("detectable_format:constrained_response", "My answer is yes.", True, True, "the phrase"),
    Case("detectable_format:constrained_response", "my answer is yes.", False, False, "case matters"),
    Case("detectable_format:constrained_response", "I think so. My answer is maybe. Thanks", True, True, "inside"),
    Case("detectable_format:constrained_response", "My answer is *yes*.", False, True, "the phrase once unstarred"),
    # detectable_format:number_highlighted_sections: *x* or **x** on one line
    Case("detectable_format:number_highlighted_sections", "*one* and **two**", True, True, "one single, one double",
         {"num_highlights": 2}),
    Case("detectable_format:number_highlighted_sections", "*one* and * *", False, False, "'* *' is blank inside",
         {"num_highlights": 2}),
    Case("detectable_format:number_highlighted_sections", "**bold**", False, False, "1", {"num_highlights": 2}),
    Case("detectable_format:number_highlighted_sections", "*a* *b*", True, True, "2", {"num_highlights": 2}),
    # detectable_format:multiple_sections: splitter word + number, as written
    Case("detectable_format:multiple_sections", "SECTION 1\nIntro.\nSECTION 2\nBody.", True, True, "2 marks",
         {"section_spliter": "SECTION", "num_sections": 2}),
    Case("detectable_format:multiple_sections", "Section 1\nIntro.\nSection 2", False, False, "case matters",
         {"section_spliter": "SECTION", "num_sections": 2}),
    Case("detectable_format:multiple_sections", "SECTION X\nIntro", False, False, "no number",
         {"section_spliter": "SECTION", "num_sections": 2}),
    Case("detectable_format:multiple_sections", "SECTION 1 a SECTION 2 b SECTION 3 c", True, True, "3 >= 2",
         {"section_spliter": "SECTION", "num_sections": 2}),
    Case("detectable_format:multiple_sections", "SECTION *1*\nA\nSECTION *2*\nB", False, True, "numbers once unstarred",
         {"section_spliter": "SECTION", "num_sections": 2}),
    # detectable_format:json_format
    Case("detectable_format:json_format", '{"a": 1}', True, True, "JSON"),
    Case("detectable_format:json_format", '```json\n{"a": [1, 2]}\n```', True, True, "JSON in a fence"),
    Case("detectable_format:json_format", 'Here is the JSON:\n{"a": 1}', False, True, "JSON below the first line"),
    Case("detectable_format:json_format", '{"a": 1,}', False, False, "a trailing comma"),
    Case("detectable_format:json_format", '"just a string"', True, True, "a JSON string is JSON"),
    # combination:repeat_prompt
    Case("combination:repeat_prompt", "write a poem. Roses are red.", True, True, "starts with it, any case",
         {"prompt_to_repeat": "Write a poem."}),
    Case("combination:repeat_prompt", "Sure! Write a poem. Roses.", False, False, "words before it",
         {"prompt_to_repeat": "Write a poem."}),
    Case("combination:repeat_prompt", "Sure!\nWrite a poem.\nRoses.", False, True, "starts it below the first line",
         {"prompt_to_repeat": "Write a poem."}),
    # combination:two_responses: six asterisks between two different answers
    Case("combination:two_responses", "Cats.\n******\nDogs.", True, True, "two, different"),
    Case("combination:two_responses", "Cats.\n******\nCats.", False, False, "the same twice"),
    Case("combination:two_responses", "******\nCats.\n******\nDogs.\n******", True, True, "blank ends are allowed"),
    Case("combination:two_responses", "Cats.\n******\n******\nDogs.", False, False, "a blank piece between"),
    Case("combination:two_responses", "Cats.\n******\nDogs.\n******\nBirds.", False, True, "3; without 'Birds.' 2"),
    # change_case:english_capital / english_lowercase
    Case("change_case:english_capital", "THIS IS A SHORT ANSWER IN ENGLISH ABOUT THE WEATHER.", True, True, "capitals"),
    Case("change_case:english_capital", "THIS IS Mostly CAPS.", False, False, "'Mostly'"),
    Case("change_case:english_capital", "Sure, here:\nTHE ANSWER IS FOUR AND THE REASON IS SIMPLE.", False, True,
         "capitals below the first line"),
    Case("change_case:english_lowercase", "this is a short answer in english about the weather.", True, True,
         "lower case"),
    Case("change_case:english_lowercase", "this is a short answer about Paris.", False, False, "'Paris'"),
    Case("change_case:english_lowercase", "Sure!\nthis is a short answer in english about the weather.", False, True,
         "lower case below the first line"),
    # change_case:capital_word_frequency: NLTK word tokens that are all capitals
    Case("change_case:capital_word_frequency", "I LOVE this.", True, True, "'I' and 'LOVE': 2 >= 2",
         {"capital_frequency": 2, "capital_relation": "at least"}),
    Case("change_case:capital_word_frequency", "NASA is cool.", False, False, "1",
         {"capital_frequency": 2, "capital_relation": "at least"}),
    Case("change_case:capital_word_frequency", "The USA and the UK.", False, False, "2, not < 2",
         {"capital_frequency": 2, "capital_relation": "less than"}),
    Case("change_case:capital_word_frequency", "DON'T GO", True, True, "DO, N'T, GO: 3",
         {"capital_frequency": 3, "capital_relation": "at least"}),
    Case("change_case:capital_word_frequency", "NOTE: WOW\nfine words here", False, True, "2; the last line has 0",
         {"capital_frequency": 2, "capital_relation": "less than"}),
    # startend:end_checker
    Case("startend:end_checker", "Done. Is there anything else I can help with?", True, True, "ends so", END),
    Case("startend:end_checker", '"Done. is there anything else i can help with?"', True, True,
         "quotes around and case ignored", END),
    Case("startend:end_checker", "Done. Is there anything else I can help with? Bye.", False, False, "'Bye.' after",
         END),
    Case("startend:end_checker", "Done. Is there anything else I can help with?\nBye.", False, True,
         "ends so without the last line", END),
    # startend:quotation
    Case("startend:quotation", '"Hello world."', True, True, "wrapped"),
    Case("startend:quotation", '  "Hello"  \n', True, True, "spaces around are ignored"),
    Case("startend:quotation", '"', False, False, "one quote wraps nothing"),
    Case("startend:quotation", 'Here:\n"Hello"', False, True, "wrapped below the first line"),
    # punctuation:no_comma
    Case("punctuation:no_comma", "No commas here.", True, True, "none"),
    Case("punctuation:no_comma", "Yes, here.", False, False, "one"),
    Case("punctuation:no_comma", "Sure, here it is:\nNo commas here.", False, True, "only the first line has one"),
    Case("punctuation:no_comma", "是的，这里。", True, True, "a full-width comma is not ','"),
]


def test_every_instruction_kind_has_hand_worked_cases() -> None:
    kinds = {c.instruction for c in CASES}
    assert kinds == set(CHECKERS) and len(kinds) == 25
    loose_only = {c.instruction for c in CASES if c.loose and not c.strict}
    failing = {c.instruction for c in CASES if not c.loose}
    assert len(failing) == 25  # every kind has a response that fails it even loosely
    # All but placeholders, titles and highlights, which removing lines or stars never adds.
    assert set(CHECKERS) - loose_only == {"detectable_content:number_placeholders", "detectable_format:title",
                                          "detectable_format:number_highlighted_sections"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.instruction}:{c.why}")
def test_hand_worked_verdicts(case: Case) -> None:
    instruction = bind(case.instruction, case.kwargs, "test")
    assert follows(instruction, case.response) is case.strict
    assert follows_loosely(instruction, case.response) is case.loose


def test_loose_variants_are_the_papers_eight() -> None:
    assert loose_variants("Sure:\n*a*\nb\nBye") == [
        "Sure:\n*a*\nb\nBye", "*a*\nb\nBye", "Sure:\n*a*\nb", "*a*\nb",
        "Sure:\na\nb\nBye", "a\nb\nBye", "Sure:\na\nb", "a\nb",
    ]


@pytest.mark.parametrize("instruction", sorted(CHECKERS))
def test_a_blank_response_follows_nothing(instruction: str) -> None:
    # "no comma" or "fewer than 5 words" would hold for an empty text; the benchmark says no.
    kwargs = next(c.kwargs for c in CASES if c.instruction == instruction)
    bound = bind(instruction, kwargs, "test")
    assert not follows(bound, "  \n ") and not follows_loosely(bound, "")


def test_hostile_texts_are_checked_quickly() -> None:
    import time

    start = time.monotonic()
    assert not follows(bind("detectable_format:json_format", {}, "t"), "[" * 200_000 + "]" * 200_000)
    assert not follows(bind("detectable_format:title", {}, "t"), "<<" * 50_000)
    assert not follows(bind("detectable_content:number_placeholders", {"num_placeholders": 1}, "t"), "[" * 100_000)
    assert time.monotonic() - start < 5.0
