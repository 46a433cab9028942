"""Choice scoring from log-likelihoods, accuracy with standard error, group averages."""

from __future__ import annotations

import math

import pytest

from proctor.core import Record, Result
from proctor.metrics import (
    accuracy_result,
    group_results,
    proportion_stderr,
)


def record(i: int, correct: bool | None, *, error: str | None = None, **extra: object) -> Record:
    return Record(
        sample_id=f"s{i}",
        prompt="Q",
        output=None if error else "答案：A",
        loglikelihoods=None,
        prediction=None if error else "A",
        target="A" if correct else "B",
        correct=correct,
        error=error,
        extra=extra,
    )


def records(n_correct: int, n_wrong: int) -> list[Record]:
    return [record(i, True) for i in range(n_correct)] + [
        record(n_correct + i, False) for i in range(n_wrong)
    ]


# ---------------------------------------------------------------- accuracy


def test_accuracy_value_and_sample_stderr_in_percent() -> None:
    result = accuracy_result(records(3, 1), "m1", "ceval-x")
    assert result.model == "m1" and result.dataset == "ceval-x" and result.metric == "accuracy"
    assert result.value == pytest.approx(75.0)
    # sqrt(p(1-p)/(n-1)) * 100 with p = .75, n = 4
    assert result.stderr == pytest.approx(math.sqrt(0.75 * 0.25 / 3) * 100)
    assert result.stderr == pytest.approx(25.0)
    assert (result.n, result.n_failed) == (4, 0)
    assert result.extra_metrics == {}


def test_failed_records_are_never_scored() -> None:
    data = records(1, 1) + [
        record(10, None, error="HTTP 500 after 3 attempts"),
        record(11, None),  # not scored for another reason: also left out
        record(12, False, error="timeout"),  # an error wins over a stale 'correct'
    ]
    result = accuracy_result(data, "m1", "d")
    assert (result.n, result.n_failed) == (2, 3)
    assert result.value == pytest.approx(50.0)
    assert result.stderr == pytest.approx(math.sqrt(0.25 / 1) * 100)


def test_one_sample_has_zero_stderr_and_none_gives_nan() -> None:
    one = accuracy_result(records(1, 0), "m", "d")
    assert (one.value, one.stderr, one.n) == (100.0, 0.0, 1)
    none = accuracy_result([record(0, None, error="boom")], "m", "d")
    assert none.n == 0 and none.n_failed == 1
    assert math.isnan(none.value) and math.isnan(none.stderr)
    assert proportion_stderr(0.5, 0) == 0.0


def test_acc_norm_is_reported_when_records_carry_it() -> None:
    data = [
        record(0, True, correct_norm=True),
        record(1, False, correct_norm=True),
        record(2, False, correct_norm=False),
        record(3, False, correct_norm=True),
        record(4, None, error="boom", correct_norm=True),  # failed: not counted
    ]
    result = accuracy_result(data, "m", "d")
    assert result.value == pytest.approx(25.0)
    assert result.extra_metrics == {"acc_norm": pytest.approx(75.0)}
    partial = accuracy_result([record(0, True, correct_norm=True), record(1, True)], "m", "d")
    assert "acc_norm" not in partial.extra_metrics  # a value over part of the data would mislead


# ---------------------------------------------------------------- groups


def test_group_means_both_ways_on_a_hand_computed_example() -> None:
    a = accuracy_result(records(10, 10), "m1", "ceval-a")  # 50 %, n = 20
    b = accuracy_result(records(8, 2), "m1", "ceval-b")  # 80 %, n = 10
    se_a, se_b = math.sqrt(0.25 / 19) * 100, math.sqrt(0.16 / 9) * 100
    assert (a.stderr, b.stderr) == (pytest.approx(se_a), pytest.approx(se_b))

    subjects, questions = group_results("ceval", [a, b])

    assert subjects.metric == "accuracy (mean of subjects)"
    assert subjects.value == pytest.approx(65.0)  # (50 + 80) / 2
    assert subjects.stderr == pytest.approx(math.sqrt(se_a**2 + se_b**2) / 2)
    assert subjects.stderr == pytest.approx(8.7943, abs=1e-4)

    assert questions.metric == "accuracy (mean of questions)"
    assert questions.value == pytest.approx(60.0)  # 18 right of 30
    assert questions.stderr == pytest.approx(math.sqrt(0.6 * 0.4 / 29) * 100)
    assert questions.stderr == pytest.approx(9.0972, abs=1e-4)

    for result in (subjects, questions):
        assert (result.model, result.dataset, result.n, result.n_failed) == ("m1", "ceval", 30, 0)


def test_group_counts_failures_and_averages_acc_norm() -> None:
    a = Result("m", "x", "accuracy", 50.0, 5.0, 20, 2, {"acc_norm": 60.0})
    b = Result("m", "y", "accuracy", 80.0, 4.0, 10, 1, {"acc_norm": 90.0})
    subjects, questions = group_results("g", [a, b])
    assert subjects.n_failed == questions.n_failed == 3
    assert subjects.extra_metrics == {"acc_norm": pytest.approx(75.0)}
    assert questions.extra_metrics == {"acc_norm": pytest.approx((60 * 20 + 90 * 10) / 30)}


def test_group_with_an_unscored_member_has_no_value() -> None:
    a = accuracy_result(records(3, 1), "m", "x")
    empty = accuracy_result([record(0, None, error="boom")], "m", "y")
    subjects, questions = group_results("g", [a, empty])
    assert math.isnan(subjects.value) and math.isnan(questions.value)


def test_group_rejects_mixed_models_and_empty_input() -> None:
    a = accuracy_result(records(1, 1), "m1", "x")
    b = accuracy_result(records(1, 1), "m2", "y")
    with pytest.raises(ValueError, match="mixes models"):
        group_results("g", [a, b])
    with pytest.raises(ValueError, match="no results"):
        group_results("g", [])
