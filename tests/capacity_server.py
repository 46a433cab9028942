"""A test server with a hidden capacity: 429 to any request arriving while `capacity` are
already being served, as a provider's concurrency limit does (tests and bench/api_adaptive.py)."""

from __future__ import annotations

import time
from typing import Any

from openai_server import OpenAIApp


class CapacityApp(OpenAIApp):
    """429 above a hidden number of requests in flight (the server's own count)."""

    def __init__(self, capacity: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.capacity = capacity
        self.refused = 0
        self.served = 0
        self.first_served: float | None = None
        self.last_served: float | None = None
        self._serving = 0

    async def _handle(self, method: str, path: str, headers: dict[str, str], body: Any, record: Any) -> Any:
        if method != "POST":
            return await super()._handle(method, path, headers, body, record)
        with self._lock:
            if self._serving >= self.capacity:
                self.refused += 1
                refuse = True
            else:
                self._serving += 1
                refuse = False
        if refuse:
            error = {"error": {"message": "Too many requests in flight", "type": "requests"}}
            return 429, error, {}
        try:
            return await super()._handle(method, path, headers, body, record)
        finally:
            with self._lock:
                self._serving -= 1
                self.served += 1
                now = time.monotonic()
                self.first_served = self.first_served or now - self.latency
                self.last_served = now
