"""Code extraction against the styles models write (issue 20 §5: a fenced function BODY whose first
line is a nested `def` or an `import`), and in time linear in the output (issue 20 §4)."""

from __future__ import annotations

import time

import pytest

from proctor.core import Record, Sample
from proctor.scoring.code_exec import CodeExecScorer
from proctor.scoring.code_extract import ExtractionTimeout, extract_code

PROMPT = 'from typing import List\n\n\ndef add_all(xs: List[int]) -> int:\n    """Sum of xs.\n    >>> add_all([1, 2])\n    3\n    """\n'
TESTS = "\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n    assert candidate([5, -5, 7]) == 7\n"

# A body (indented, the signature not repeated) in the shapes chat models answer with.
BODIES = {
    "fenced body, import first": "```python\n    import math\n    return int(math.fsum(xs))\n```",
    "fenced body, from-import first": "```python\n    from functools import reduce\n    return reduce(lambda a, b: a + b, xs, 0)\n```",
    "fenced body, nested def first": "```python\n    def helper(values):\n        return sum(values)\n    return helper(xs)\n```",
    "prose around a fenced body with a nested def": (
        "Here is the completed function body:\n\n```python\n    def _acc(total, x):\n        return total + x\n\n"
        "    out = 0\n    for x in xs:\n        out = _acc(out, x)\n    return out\n```\n\nThis iterates over the list once."),
    "unclosed fence, import first, end token": "```py\n    import operator\n    import functools\n    return functools.reduce(operator.add, xs, 0)\n<|im_end|>",
    "fenced body, nested class first": "```python\n    class Acc:\n        total = 0\n    for x in xs:\n        Acc.total += x\n    return Acc.total\n```",
    "tilde fence, import first": "~~~python\n    import itertools\n    return list(itertools.accumulate(xs))[-1] if xs else 0\n~~~",
    "fenced body, nested def, no language tag": "```\n    def add(a, b):\n        return a + b\n    result = 0\n    for x in xs:\n        result = add(result, x)\n    return result\n```",
}
# Top-level code written indented stays top-level code: it defines the entry point itself.
WHOLE = {
    "indented whole function with its import": "```python\n    import math\n\n    def add_all(xs):\n        return int(math.fsum(xs))\n```",
    "indented whole function, helper first": "```python\n    def _helper(v):\n        return v\n\n    def add_all(xs):\n        return sum(_helper(x) for x in xs)\n```",
    "base model body with import (no fence)": "    import math\n    return int(math.fsum(xs))\n\n\ndef other():\n    pass\n",
    "a constant before the function, no fence": "OFFSET = 0\n\ndef add_all(xs):\n    return sum(xs) + OFFSET\n",
    "a one-word line before the function, no fence": "Python\ndef add_all(xs):\n    return sum(xs)\n",
}


def _score(output: str) -> str:
    s = Sample(id="t/0", question=PROMPT, target=TESTS, fields={"entry_point": "add_all"})
    score = CodeExecScorer(timeout_s=5.0).score(s, Record(item_id="t/0", prompt=PROMPT, output=output, loglikelihoods=None))
    return score.rule


@pytest.mark.parametrize("name", list(BODIES))
def test_fenced_function_body_is_a_body(name: str) -> None:
    found = extract_code(BODIES[name], PROMPT, "add_all")
    assert found is not None and found.code.startswith((" ", "\t")), found  # appended to the prompt, not dedented
    assert _score(BODIES[name]) == "passed"


@pytest.mark.parametrize("name", list(WHOLE))
def test_indented_whole_function_stays_whole(name: str) -> None:
    assert _score(WHOLE[name]) == "passed"


# 72 KB outputs that took the extractor from one to 76 seconds when it tried every prefix.
LONG = {
    "prose with lines that start like code": "from the list above we can see that the sum grows\n" * 1440,
    "a class of prose lines": "class of problems like this one is hard to sum up\n" * 1440,
    "many broken fenced blocks": "```python\nimport x y\n```\n" * 3000,
    "a def whose bracket never closes, repeated": "def f(x):\n    return (x +\n" * 2800,
    "a long fenced answer cut off mid-line": "```python\n" + "def g(x):\n    return x\n\n" * 3000 + "def add_all(xs):\n    return (",
}


@pytest.mark.parametrize("name", list(LONG))
def test_long_outputs_are_scored_quickly(name: str) -> None:
    output = LONG[name]
    assert len(output) >= 70_000
    t = time.monotonic()
    try:
        extract_code(output, PROMPT, "add_all")
    except ExtractionTimeout:
        pass
    extracting = time.monotonic() - t
    assert extracting < 1.0, f"extraction took {extracting:.2f}s for {len(output)} characters"  # 0.02-0.25 s idle
    t = time.monotonic()
    rule = _score(output)
    scoring = time.monotonic() - t
    assert rule in ("extraction_failed", "failed", "syntax_error"), rule
    assert scoring < 3.0, f"scoring took {scoring:.2f}s"  # with a sandbox run where code was found


def test_extraction_has_a_deadline() -> None:
    output = "```python\n" + "def g(x):\n    return x\n\n" * 3000 + "def add_all(xs):\n    return ("
    s = Sample(id="t/0", question=PROMPT, target=TESTS, fields={"entry_point": "add_all"})
    score = CodeExecScorer(extract_s=0.001).score(s, Record(item_id="t/0", prompt=PROMPT, output=output, loglikelihoods=None))
    assert score.rule == "extraction_failed" and "time limit" in score.explanation
