"""Small helpers shared by the backend tests."""

from __future__ import annotations

import asyncio
from typing import Sequence

from proctor.core import Request
from proctor.models.base import Backend


async def process_as_two_datasets(backend: Backend, requests: Sequence[Request]) -> None:
    """start(), then two concurrent process() calls (the two halves of requests), then close().

    Two datasets of one run share a backend this way; its limits must hold across both.
    """
    half = len(requests) // 2
    await backend.start()
    try:
        await asyncio.gather(
            backend.process(requests[:half], lambda i, r: None),
            backend.process(requests[half:], lambda i, r: None),
        )
    finally:
        await backend.close()
