"""Reading a judge prompt the way a careful judge does: the tag comes from the instructions
(which precede all data), and each section runs from its BEGIN line to its END line with that tag."""

from __future__ import annotations

import re

_TAG = re.compile(r"the tag ([0-9a-f]{16}) appears")


def judge_sections(prompt: str) -> dict[str, str]:
    """{"QUESTION": ..., "REFERENCE ANSWER": ..., "SUBMITTED ANSWER": ...} of one judge prompt;
    AssertionError unless each section is delimited exactly once."""
    match = _TAG.search(prompt)
    assert match is not None, "the instructions name no tag"
    tag = match.group(1)
    sections: dict[str, str] = {}
    for name in ("QUESTION", "REFERENCE ANSWER", "SUBMITTED ANSWER"):
        begin, end = f"<<<BEGIN {name} {tag}>>>\n", f"\n<<<END {name} {tag}>>>"
        assert prompt.count(begin) == 1 and prompt.count(end) == 1, (name, prompt)
        sections[name] = prompt.split(begin, 1)[1].split(end, 1)[0]
    # Outside the sections there is only the template's own text (and the tag).
    outside = prompt
    for name, text in sections.items():
        outside = outside.replace(f"<<<BEGIN {name} {tag}>>>\n{text}\n<<<END {name} {tag}>>>", "")
    assert tag not in outside.replace(f"the tag {tag} appears", "").replace(f" {tag}>>>", ""), outside
    return sections


def outside_sections(prompt: str) -> str:
    """The prompt with its three data sections cut out: what a judge takes as instructions."""
    sections = judge_sections(prompt)
    tag = _TAG.search(prompt).group(1)  # type: ignore[union-attr]
    for name, text in sections.items():
        prompt = prompt.replace(f"<<<BEGIN {name} {tag}>>>\n{text}\n<<<END {name} {tag}>>>", "")
    return prompt
