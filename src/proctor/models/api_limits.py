"""What the adaptive concurrency limit and the token-rate limit learn from one exchange."""

from __future__ import annotations

from typing import Any

from proctor.core import Response
from proctor.models.api_errors import Failure

# The statuses by which a server says "too much, slow down".
PUSH_BACK_STATUSES = frozenset({429, 503})
# Bytes of request body per prompt token, estimated (English ~4, JSON framing included);
# CJK text has fewer bytes per token (about 3), so the estimate errs low there: the usage
# the server reports corrects it after each answer.
_BYTES_PER_TOKEN = 4


def is_push_back(outcome: Response | Failure) -> bool:
    return isinstance(outcome, Failure) and outcome.status in PUSH_BACK_STATUSES


def expected_tokens(content: bytes, body: dict[str, Any]) -> int:
    """Tokens a provider counts against a TPM limit before answering: the prompt (estimated
    from the body) plus the completion it may use (max_tokens), as OpenAI counts it."""
    budget = body.get("max_completion_tokens", body.get("max_tokens")) or 0
    return len(content) // _BYTES_PER_TOKEN + int(budget)


def used_tokens(outcome: Response | Failure) -> int | None:
    """Tokens the exchange really used: the answer's usage; 0 for a refused request; None
    when unknown (the reservation stands)."""
    if isinstance(outcome, Failure):
        return 0 if outcome.status in PUSH_BACK_STATUSES else None
    if outcome.prompt_tokens is None or outcome.completion_tokens is None:
        return None
    return outcome.prompt_tokens + outcome.completion_tokens
