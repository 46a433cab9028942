"""Choice scoring from log-likelihoods, accuracy with standard error, group averages."""

from __future__ import annotations

import math

import pytest

from proctor.core import Item, Result, Sample, Score
from proctor.metrics import (
    accuracy_result as _accuracy_result,
    circular_result,
    group_results,
    proportion_stderr,
)


def record(i: int, correct: bool | None, *, error: str | None = None, **extra: object) -> Score | None:
    """The score of item i, or None for a failed item (never scored)."""
    if error is not None:
        return None
    return Score(1.0 if correct else 0.0, answer="A" if correct else "B", rule="explicit", extra=extra)


def accuracy_result(data: list[Score | None], model: str, dataset: str, **kw: object) -> Result:
    scores = [s for s in data if s is not None]
    return _accuracy_result(scores, model, dataset, n_failed=len(data) - len(scores), **kw)  # type: ignore[arg-type]


def records(n_correct: int, n_wrong: int) -> list[Score | None]:
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
        record(11, None, error="no response"),
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


def test_extraction_rate_counts_answers_found_among_scored_items() -> None:
    data = [Score(1.0, answer="A"), Score(0.0, answer=None), Score(0.0, answer="C"), None]
    result = accuracy_result(data, "m", "d", generated=True)
    assert result.value == pytest.approx(100 / 3)
    assert result.extra_metrics["extraction_rate"] == pytest.approx(200 / 3)  # 2 of the 3 scored
    assert "extraction_rate" not in accuracy_result(data, "m", "d").extra_metrics  # ppl: no extraction


def test_partial_credit_uses_the_sample_standard_error() -> None:
    result = accuracy_result([Score(0.5), Score(1.0), Score(0.0)], "m", "d")
    assert result.value == pytest.approx(50.0)
    assert result.stderr == pytest.approx(math.sqrt(0.25 / 3) * 100)  # sd 0.5, n 3


# ---------------------------------------------------------------- circular


def _rotations(sample_id: str, right: list[bool | None]) -> tuple[list[Item], dict[str, Score]]:
    sample = Sample(id=sample_id, question="q", target="A", choices=("w", "x", "y", "z"))
    items = [Item(id=f"{sample_id}#r{k}", sample=sample, sample_id=sample_id) for k in range(len(right))]
    scores = {i.id: Score(1.0 if ok else 0.0, answer="A") for i, ok in zip(items, right) if ok is not None}
    return items, scores


def test_circular_counts_a_question_only_when_every_order_is_right() -> None:
    items: list[Item] = []
    scores: dict[str, Score] = {}
    for sid, right in (("q1", [True] * 4), ("q2", [True, True, True, False]), ("q3", [True, False, False, False]),
                       ("q4", [True, True, None, True])):  # q4: one order failed
        more_items, more_scores = _rotations(sid, right)
        items += more_items
        scores.update(more_scores)
    result = circular_result(items, scores, "m", "ceval-x_circular", generated=True)
    assert (result.metric, result.n, result.n_failed) == ("circular", 3, 1)
    assert result.value == pytest.approx(100 / 3)  # q1 only
    extra = result.extra_metrics
    assert extra["accuracy"] == pytest.approx(100 * 8 / 12)
    assert [extra[f"acc_r{k}"] for k in range(4)] == pytest.approx([100.0, 200 / 3, 200 / 3, 100 / 3])
    assert [extra[f"more_{j}_4"] for j in (1, 2, 3, 4)] == pytest.approx([100.0, 200 / 3, 200 / 3, 100 / 3])
    assert extra["extraction_rate"] == pytest.approx(100.0)


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


# ---------------------------------------------------------------- pass@k


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    from proctor.metrics import pass_at_k

    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 3) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)
    assert pass_at_k(4, 3, 2) == 1.0  # fewer wrong answers than draws
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_passk_result_over_questions_with_several_answers() -> None:
    from proctor.metrics import passk_result

    items: list[Item] = []
    scores: dict[str, Score] = {}
    for sid, right in (("a", [1, 0, 0, 0]), ("b", [1, 1, 1, 1]), ("c", [0, 0, 0, 0]), ("d", [1, None, 0, 0])):
        sample = Sample(id=sid, question="q", target="t")
        for j, r in enumerate(right):
            item = Item(id=f"{sid}#n{j}", sample=sample, sample_id=sid)
            items.append(item)
            if r is not None:
                scores[item.id] = Score(float(r), answer="x")
    result = passk_result(items, scores, "m", "humaneval")
    assert (result.metric, result.n, result.n_failed) == ("pass@1", 3, 1)  # d has a failed answer
    assert result.value == pytest.approx(100 * (0.25 + 1 + 0) / 3)
    assert result.extra_metrics["pass@2"] == pytest.approx(100 * (0.5 + 1 + 0) / 3)  # a: 1 - C(3,2)/C(4,2)
    assert result.extra_metrics["pass@4"] == pytest.approx(100 * 2 / 3)
