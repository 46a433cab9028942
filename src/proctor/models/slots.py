"""The concurrency limit of one backend, shared by all its requests."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable


class ConcurrencyLimit:
    """At most `size` requests at once (one asyncio.Semaphore), with in-use counters.

    The HTTP connections themselves live in one pooled client session: aiohttp's
    pool takes and returns a connection in constant time, so (unlike httpcore's
    pool, which scanned every connection per request) no per-slot client is needed.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._semaphore = asyncio.Semaphore(size)
        self.in_use = 0
        self.max_in_use = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until fewer than `size` requests are in flight; hold a place while inside."""
        async with self._semaphore:
            self.in_use += 1
            if self.in_use > self.max_in_use:
                self.max_in_use = self.in_use
            try:
                yield
            finally:
                self.in_use -= 1


class AdaptiveLimit(ConcurrencyLimit):
    """A concurrency limit that finds the server's capacity (`--adaptive`).

    A congestion window as TCP keeps one: it opens at `start` requests in flight (default 16)
    and grows by one per clean answer (doubling each round trip) until the server first
    pushes back. A push-back (HTTP 429/503, or answers taking more than `latency_factor` times
    the fastest seen) sets it to `backoff` times what was in flight then (at most once per
    round trip: answers to requests sent before a cut say nothing about the new window); it
    then climbs back by one per answer to just below that level and probes above it by one
    every two round trips. It
    never exceeds `upper` (--max-concurrency) nor falls below 1. Opening small means a bound
    8x too high costs a few refused requests, not a burst of them.
    """

    INITIAL = 16

    def __init__(
        self,
        upper: int,
        *,
        start: int | None = None,
        backoff: float = 0.95,
        latency_factor: float = 3.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(upper)
        self.upper = upper
        self.window = float(max(1, min(start or self.INITIAL, upper)))
        self.backoff = backoff
        self.latency_factor = latency_factor
        self.cuts = 0
        self._clock = clock
        self._last_cut = float("-inf")
        self._fastest: float | None = None
        self._ceiling = 0.0  # the window at the last push-back
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def slow_start(self) -> bool:
        return self.cuts == 0

    @property
    def limit(self) -> int:
        return max(1, min(self.upper, int(self.window)))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        while self.in_use >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                self._wake()
                raise
        self.in_use += 1
        self.max_in_use = max(self.max_in_use, self.in_use)
        try:
            yield
        finally:
            self.in_use -= 1
            self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_use
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def observe(self, sent_at: float, latency: float, pushed_back: bool) -> None:
        """Learn from one answer: `pushed_back` for a 429/503, else its latency counts."""
        if not pushed_back:
            if self._fastest is None or latency < self._fastest:
                self._fastest = latency
            # Slower than a few times the fastest answer: the server is queueing.
            slow = latency > self.latency_factor * self._fastest and latency > 0.05
            if not slow:
                if self.slow_start:
                    self.window += 1.0
                elif self.window < self._ceiling - 1.0:
                    # Back up quickly to just below where the server last pushed back,
                    # then probe above it slowly: the window spends its time near capacity.
                    self.window = min(self.window + 1.0, self._ceiling - 1.0)
                else:
                    self.window += 0.5 / self.window
                self.window = min(self.window, float(self.upper))
                self._wake()
                return
        if sent_at <= self._last_cut:
            return  # sent under the old window: already reacted to
        # What the server was holding when it pushed back is the best measure of its capacity
        # (a 429 comes back at once; in slow start the window may be far past it by now).
        held = min(self.window, float(self.in_use))
        self._ceiling = held
        self.window = max(1.0, held * self.backoff)
        self.cuts += 1
        self._last_cut = self._clock()
