"""Scoring: the stage that turns stored records into scores, one registered Scorer per rule.

Importing the package registers the built-in scorers: agieval_cloze, bbh, cascade, choice,
choice_set, code_exec, exact, gaokao, ifeval, llm_judge, math_equiv, mbpp, numeric, pairwise_judge,
rating_judge, regex.
"""

# Importing a scorer module registers it (math_equiv imports Math-Verify only when used).
from proctor.scoring import (  # noqa: F401
    bbh, choice, choice_set, code_exec, exact, gaokao, ifeval, judge, judged, math_equiv, mbpp, numeric, regex,
)
from proctor.scoring.base import Scorer, get_scorer, scorer_names
from proctor.scoring.extract import extract_choice
from proctor.scoring.judge import judge_scorer

__all__ = ["Scorer", "extract_choice", "get_scorer", "judge_scorer", "scorer_names"]
