"""A token-bucket rate limiter shared by all requests of one backend."""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class RateLimiter:
    """Token bucket of `rate` tokens per second holding at most `burst` tokens.

    Written in its GCRA form (one "theoretical arrival time" instead of a token
    count): each caller reserves the next free slot synchronously and then
    sleeps until it, so there is no lock, waiters are served in arrival order,
    and a caller cancelled while sleeping only wastes its own slot (the limiter
    errs on the safe side). Any window of T seconds admits at most
    `burst + rate * T` requests; the bucket starts full.
    """

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        # How far ahead of "now" the schedule may run before callers must wait.
        self._tolerance = (burst - 1.0) * self._interval
        self._clock = clock
        self._tat = float("-inf")  # theoretical arrival time of the next request

    @classmethod
    def from_limits(cls, qps: float | None, rpm: float | None) -> RateLimiter | None:
        """The limiter for a model's `qps` and/or `rpm` (the stricter wins); None for neither.

        The burst is one second's worth of the rate (at least one request), so a
        client never runs ahead of its limit by more than a second.
        """
        rates = [r for r in (qps, None if rpm is None else rpm / 60.0) if r is not None]
        if not rates:
            return None
        rate = min(rates)
        return cls(rate=rate, burst=max(1.0, rate))

    def reserve(self) -> float:
        """Take the next slot; return how many seconds the caller must wait before using it."""
        now = self._clock()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> None:
        """Wait until one request may be sent."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, burst={self.burst:g})"
