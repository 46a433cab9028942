"""Concurrency slots, each with its own single-connection HTTP client."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, Generic, Protocol, TypeVar


class _Closable(Protocol):
    def aclose(self) -> Awaitable[None]: ...


C = TypeVar("C", bound=_Closable)


class ClientSlots(Generic[C]):
    """At most `size` requests at once (one asyncio.Semaphore), each on a slot with its own client.

    Why not one httpx client with `size` connections: httpcore's pool scans all
    its connections (quadratically) on every request and response, which at 128
    connections costs more CPU than the requests themselves and caps a run far
    below the server's capacity. A single-connection client per slot keeps that
    work constant. Free slots are reused last-in first-out, so a lightly loaded
    run keeps using a few warm keep-alive connections. Clients are made lazily.
    """

    def __init__(self, size: int, make_client: Callable[[], C]) -> None:
        self.size = size
        self._make_client = make_client
        self._semaphore = asyncio.Semaphore(size)
        self._free = list(range(size - 1, -1, -1))  # pop() hands out slot 0 first
        self._clients: dict[int, C] = {}
        self.in_use = 0
        self.max_in_use = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[C]:
        """Wait for a free slot; yield its client."""
        async with self._semaphore:
            # The semaphore guarantees a free slot: no await between here and pop().
            index = self._free.pop()
            self.in_use += 1
            self.max_in_use = max(self.max_in_use, self.in_use)
            try:
                client = self._clients.get(index)
                if client is None:
                    client = self._clients[index] = self._make_client()
                yield client
            finally:
                self.in_use -= 1
                self._free.append(index)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
