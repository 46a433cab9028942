"""Scoring: the stage that turns stored records into scores, one registered Scorer per rule.

Importing the package registers the built-in scorers: bbh, choice, code_exec, exact, math_equiv,
numeric, regex.
"""

from proctor.scoring import choice, exact, numeric, regex  # noqa: F401  (registers the scorers)
from proctor.scoring import code_exec  # noqa: F401  (registers the code_exec scorer)
from proctor.scoring import bbh  # noqa: F401  (registers bbh: BIG-Bench Hard's answer kinds)
from proctor.scoring import math_equiv  # noqa: F401  (registers math_equiv; Math-Verify is imported lazily)
from proctor.scoring.base import Scorer, get_scorer, scorer_names
from proctor.scoring.extract import extract_choice

__all__ = ["Scorer", "extract_choice", "get_scorer", "scorer_names"]
