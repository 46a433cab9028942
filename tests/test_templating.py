"""Prompt templates: Jinja2 with strict undefined beside the `{field}` form of Proctor 0.1."""

from __future__ import annotations

import pytest

from proctor.core import Sample
from proctor.errors import ConfigError
from proctor.prompts.wording import fill
from proctor.templating import TemplateProblem, is_jinja, render_jinja

MBPP_LIKE = Sample(
    id="11",
    question="Write a function to remove first and last occurrence of a given character from the string.",
    target="",
    fields={"test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"'],
            "passage": "P.", "meta": {"source": "x"}, "nothing": None},
)


def test_jinja_joins_a_list_with_real_newlines() -> None:
    text = fill('{{ question }}\nYour code should pass these tests:\n\n{{ test_list | join("\n") }}\n', MBPP_LIKE, {})
    assert text == (
        "Write a function to remove first and last occurrence of a given character from the string.\n"
        "Your code should pass these tests:\n\n"
        'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
    )


def test_jinja_reads_nested_fields_and_loops() -> None:
    assert fill("{{ passage }} {{ meta.source }}", MBPP_LIKE, {}) == "P. x"
    mc = Sample(id="q", question="Q?", target="B", choices=("one", "two"))
    assert fill("{{ question }}{% for l, c in zip(labels, choices) %}\n{{ l }}) {{ c }}{% endfor %}", mc, {},
                zip=zip) == "Q?\nA) one\nB) two"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ missing }}", "'missing' is undefined"),
        ("{{ test_list }}", "field 'test_list' is a list, not text (use a filter such as join)"),
        ("{{ meta }}", "field 'meta' is a mapping, not text"),
        ("{{ nothing }}", "field 'nothing' is a null, not text"),
        ("{{ question ", "not a valid Jinja template"),
    ],
)
def test_jinja_refuses_what_would_be_empty_or_a_repr(template: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        fill(template, MBPP_LIKE, {})
    message = str(err.value)
    assert expected in message and "sample '11'" in message and "\n" not in message


def test_format_form_is_unchanged() -> None:
    # 0.1's form: {field} filled, a literal {} kept, {{ }} an escaped brace, unknown names refused.
    sample = Sample(id="1", question="2+2?", target="4", fields={"subject": "math"})
    assert fill("{question} in \\boxed{} ({subject})", sample, {}) == "2+2? in \\boxed{} (math)"
    assert fill('{{"a": {question}}}', sample, {}) == '{"a": 2+2?}'
    assert fill("{{x}}", sample, {}, "format") == "{x}"
    with pytest.raises(ConfigError, match=r"names \{nope\}"):
        fill("{nope}", sample, {})


def test_detection() -> None:
    assert is_jinja("{{ question }}") and is_jinja("{{question}}") and is_jinja("{% if x %}{% endif %}")
    assert not is_jinja("{question}") and not is_jinja('{{"a": 1}}') and not is_jinja("\\boxed{{}}")
    assert is_jinja("{question}", "jinja") and not is_jinja("{{ question }}", "format")


def test_sandbox_keeps_python_internals_out() -> None:
    with pytest.raises(TemplateProblem):
        render_jinja("{{ x.__class__.__mro__ }}", {"x": "a"})
