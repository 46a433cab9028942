"""Turning Samples into Requests."""

from proctor.prompts.multiple_choice import CHOICES, build_request, prompt_version

__all__ = ["CHOICES", "build_request", "prompt_version"]
