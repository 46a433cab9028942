"""Turning Samples into Requests."""

from proctor.prompts.multiple_choice import CHOICES, LETTER_CONTINUATIONS, build_request, prompt_version

__all__ = ["CHOICES", "LETTER_CONTINUATIONS", "build_request", "prompt_version"]
