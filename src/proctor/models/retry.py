"""When and how long to wait before retrying an HTTP request."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
"""Statuses worth another try: rate limited, or the server had a problem."""

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Statuses whose `Retry-After` header is honoured."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` retries after the first attempt, exponential backoff with full jitter.

    The n-th retry waits uniform(0, min(cap, base * 2**(n-1))) seconds, or at
    least the server's `Retry-After` (capped at `max_retry_after`, so a server
    asking for an hour does not stall a run silently).
    """

    retries: int = 3
    base: float = 0.5
    cap: float = 20.0
    max_retry_after: float = 120.0

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def delay(
        self, retry: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to sleep before retry number `retry` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** max(0, retry - 1)))
        jittered = (rng or random).uniform(0.0, ceiling)
        if retry_after is not None:
            return max(min(retry_after, self.max_retry_after), jittered)
        return jittered
