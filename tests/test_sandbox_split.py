"""The split run's codec and judge (proctor.sandbox.wire, proctor.sandbox.split): values cross as
plain data of exact built-in types, and anything else is refused."""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict, namedtuple

import pytest

from proctor.sandbox import Limits
from proctor.sandbox.split import judge
from proctor.sandbox.wire import NotPlain, WireError, decode, encode

FAST = Limits(timeout_s=5.0)
Point = namedtuple("Point", "x y")


PLAIN = [
    None, True, False, 0, -7, 2**70, 2**20000, 1.5, -0.0, math.inf, "text", "surrogate \udc80", b"\x00\xff",
    1 + 2j, [1, [2, (3, {4})]], (), {"a": [1.0], (1, 2): None, 3: frozenset({b"x"})}, set(), frozenset(),
]


@pytest.mark.parametrize("value", PLAIN, ids=[f"{type(v).__name__}{i}" for i, v in enumerate(PLAIN)])
def test_plain_values_cross_exactly(value: object) -> None:
    back = decode(json.loads(json.dumps(encode(value))))
    assert back == value and type(back) is type(value)
    if isinstance(value, list):
        assert type(back[1][1]) is tuple


def test_nan_crosses_as_nan() -> None:
    assert math.isnan(decode(json.loads(json.dumps(encode(float("nan"))))))


def test_subclasses_arrive_as_their_base_type_without_their_overrides() -> None:
    class Liar(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    class Iter(list):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([42])

    for value, expected in ((Counter("aab"), {"a": 2, "b": 1}), (OrderedDict(b=1), {"b": 1}),
                            (Point(1, 2), (1, 2)), (Liar(-1), -1), (Iter([1, 2]), [1, 2])):
        back = decode(encode(value))
        assert back == expected and type(back) is type(expected)


@pytest.mark.parametrize("value", [object(), lambda: 1, iter([1]), range(3), [[object()]], type])
def test_other_objects_are_not_plain(value: object) -> None:
    with pytest.raises(NotPlain):
        encode(value)


@pytest.mark.parametrize("data", [
    1.5,  # an untagged float
    {"f": 1.5}, {"eq": "always"}, {"f": "1", "t": []}, {"h": 1},  # bad tags; a handle with no way to use it
    {"d": [[1]]}, {"s": [[1]]}, {"d": [[[1], 2]]},  # a broken pair; unhashable members
    {"b": "zz"}, {"I": "not hex"},
])
def test_decode_refuses_what_is_not_plain(data: object) -> None:
    with pytest.raises(WireError):
        decode(data)


def test_decode_bounds_depth() -> None:
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(WireError):
        decode(deep)


def test_judge_passes_fails_and_explains() -> None:
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5, 'two plus three'\n\ncheck(add)\n"
    good = judge("def add(a, b):\n    return a + b\n", tests, [("add", False)], limits=FAST)
    assert good.passed and good.calls == 1
    bad = judge("def add(a, b):\n    return a * b\n", tests, [("add", False)], limits=FAST)
    assert bad.status == "failed" and "two plus three" in bad.explanation and "prog.py" not in bad.explanation
    raised = judge("def add(a, b):\n    raise ValueError('no')\n", "try:\n    add(1, 2)\nexcept ValueError:\n    pass\n",
                   [("add", False)], limits=FAST)
    assert raised.passed  # a test that expects the exception gets it, as the built-in type
    missing = judge("def other():\n    pass\n", tests, [("add", False)], limits=FAST)
    assert missing.status == "failed" and "NameError" in missing.explanation


def test_arguments_the_tests_cannot_send_fail_the_item() -> None:
    out = judge("def apply(f):\n    return f(1)\n", "assert apply(lambda x: x) == 1\n", [("apply", False)], limits=FAST)
    assert out.status == "failed" and "cannot be sent" in out.explanation
