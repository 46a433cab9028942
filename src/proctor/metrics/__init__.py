"""Answer extraction, choice scoring, accuracy with standard errors, group averages."""

from proctor.metrics.accuracy import (
    ACCURACY,
    MEAN_OF_QUESTIONS,
    MEAN_OF_SUBJECTS,
    accuracy_result,
    common_metric,
    group_results,
    proportion_stderr,
)
from proctor.metrics.extract import extract_choice
from proctor.metrics.option_text import match_option_text
from proctor.metrics.loglikelihood import choice_from_loglikelihoods, choice_from_loglikelihoods_norm

__all__ = [
    "ACCURACY",
    "MEAN_OF_QUESTIONS",
    "MEAN_OF_SUBJECTS",
    "accuracy_result",
    "choice_from_loglikelihoods",
    "choice_from_loglikelihoods_norm",
    "common_metric",
    "extract_choice",
    "group_results",
    "match_option_text",
    "proportion_stderr",
]
