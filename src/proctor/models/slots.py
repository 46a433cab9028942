"""The concurrency limit of one backend, shared by all its requests."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


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
