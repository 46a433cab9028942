"""Model backends behind one protocol."""

from proctor.models.base import Backend, OnResponse, PromptLogprobs
from proctor.models.factory import create_backend

__all__ = ["Backend", "OnResponse", "PromptLogprobs", "create_backend"]
