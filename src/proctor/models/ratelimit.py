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


class TokenRateLimiter:
    """Tokens per minute (`--tpm`): each request reserves its prompt (estimated) plus the
    completion it may use (max_tokens), as providers count it; when the answer's `usage`
    arrives, the reservation is corrected to what was really used.

    The GCRA schedule of RateLimiter with a cost per request: any window of T seconds admits
    about `burst + rate * T` tokens (burst: one second's worth). Unlike RateLimiter, a
    waiter does not book its place ahead: the requests in flight may give back most of their
    reservation when their usage arrives, so waiters queue (in order) and take tokens only
    when the bucket has them. A request bigger than the burst goes alone, its excess charged
    to those after it.
    """

    # How often a waiter looks again (a settled reservation may have freed tokens).
    POLL_S = 0.05

    def __init__(self, tpm: float, clock: Callable[[], float] = time.monotonic) -> None:
        if tpm <= 0:
            raise ValueError(f"tpm must be > 0, got {tpm}")
        self.tpm = tpm
        self.rate = tpm / 60.0  # tokens per second
        self.burst = max(1.0, self.rate)
        self._clock = clock
        self._tat = float("-inf")
        self._queue: asyncio.Lock | None = None
        self.reserved_total = 0
        self.used_total = 0

    def wait_for(self, tokens: int) -> float:
        """Seconds until `tokens` may be taken (0: now)."""
        tat = max(self._tat, self._clock())
        return max(0.0, tat + (min(tokens, self.burst) - self.burst) / self.rate - self._clock())

    def take(self, tokens: int) -> None:
        self._tat = max(self._tat, self._clock()) + tokens / self.rate
        self.reserved_total += tokens

    async def acquire(self, tokens: int) -> None:
        """Wait until `tokens` fit in the budget, then take them."""
        if self._queue is None:
            self._queue = asyncio.Lock()
        async with self._queue:  # first come, first served
            while (wait := self.wait_for(tokens)) > 0:
                await asyncio.sleep(min(wait, self.POLL_S))
            self.take(tokens)

    def settle(self, reserved: int, used: int | None) -> None:
        """Correct a reservation by the tokens the server says the exchange used."""
        if used is None:
            self.used_total += reserved
            return
        self.used_total += used
        # From now when the schedule is behind the clock (the bucket refilled while the answer
        # was on its way): added to a past time, an overrun would be forgiven, not charged.
        self._tat = max(self._tat, self._clock()) + (used - reserved) / self.rate

    def __repr__(self) -> str:
        return f"TokenRateLimiter(tpm={self.tpm:g})"
