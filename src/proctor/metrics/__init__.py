"""Aggregations: accuracy with standard errors, circular accuracy, pass@k, avg@K/maj@K over repeats, IFEval's
four scores, extraction rate, group averages."""

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
from proctor.metrics.ifeval import IFEVAL_METRIC, IFEVAL_METRICS, ifeval_result
from proctor.metrics.passk import pass_at_k, passk_result
from proctor.metrics.registry import Metric, get_metric, metric_names, register_metric
from proctor.metrics.repeats import majority, repeats_result, vote_key

__all__ = [
    "ACCURACY",
    "CIRCULAR",
    "IFEVAL_METRIC",
    "IFEVAL_METRICS",
    "MEAN_OF_QUESTIONS",
    "MEAN_OF_SUBJECTS",
    "Metric",
    "accuracy_result",
    "breakdown_metrics",
    "circular_result",
    "common_metric",
    "get_metric",
    "group_results",
    "ifeval_result",
    "majority",
    "metric_names",
    "pass_at_k",
    "passk_result",
    "proportion_stderr",
    "register_metric",
    "repeats_result",
    "vote_key",
]
