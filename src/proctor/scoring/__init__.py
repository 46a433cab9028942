"""Scoring: the stage that turns stored records into scores, one registered Scorer per rule.

Importing the package registers the built-in scorers: choice, exact, numeric, regex.
"""

from proctor.scoring import choice, exact, numeric, regex  # noqa: F401  (registers the scorers)
from proctor.scoring.base import Scorer, get_scorer, scorer_names
from proctor.scoring.extract import extract_choice

__all__ = ["Scorer", "extract_choice", "get_scorer", "scorer_names"]
