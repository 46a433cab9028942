"""Scoring: the stage that turns stored records into scores, one registered Scorer per rule.

Importing the package registers the built-in scorers: bbh, cascade, choice, code_exec, exact,
ifeval, llm_judge, math_equiv, numeric, regex.
"""

# Importing a scorer module registers it (math_equiv imports Math-Verify only when used).
from proctor.scoring import bbh, choice, code_exec, exact, ifeval, judge, math_equiv, numeric, regex  # noqa: F401
from proctor.scoring.base import Scorer, get_scorer, scorer_names
from proctor.scoring.extract import extract_choice
from proctor.scoring.judge import judge_scorer

__all__ = ["Scorer", "extract_choice", "get_scorer", "judge_scorer", "scorer_names"]
