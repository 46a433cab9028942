"""IFEval (Zhou et al., 2023): 25 verifiable instructions, their checkers and the `ifeval` scorer."""

from proctor.scoring.ifeval import checkers  # noqa: F401  (registers the 25 checkers)
from proctor.scoring.ifeval.registry import CHECKERS, Instruction, bind
from proctor.scoring.ifeval.scorer import IFEvalScorer, follows, follows_loosely, instructions_of, loose_variants

__all__ = ["CHECKERS", "IFEvalScorer", "Instruction", "bind", "follows", "follows_loosely", "instructions_of",
           "loose_variants"]
