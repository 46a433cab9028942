"""Aggregations: accuracy with standard errors, circular accuracy, extraction rate, group averages."""

from proctor.metrics.accuracy import (
    ACCURACY,
    MEAN_OF_QUESTIONS,
    MEAN_OF_SUBJECTS,
    accuracy_result,
    breakdown_metrics,
    common_metric,
    group_results,
    proportion_stderr,
)
from proctor.metrics.circular import CIRCULAR, circular_result
from proctor.metrics.passk import pass_at_k, passk_result

__all__ = [
    "ACCURACY",
    "CIRCULAR",
    "MEAN_OF_QUESTIONS",
    "MEAN_OF_SUBJECTS",
    "accuracy_result",
    "breakdown_metrics",
    "circular_result",
    "common_metric",
    "group_results",
    "pass_at_k",
    "passk_result",
    "proportion_stderr",
]
