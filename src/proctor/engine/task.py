"""Running one task: send what has no successful record, write a record per response."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from proctor.core import Record, Request, Response, Sample
from proctor.engine.cache import ResponseCache
from proctor.engine.prepare import PreparedDataset
from proctor.engine.scoring import make_record
from proctor.engine.store import PredictionStore
from proctor.models.base import Backend

log = logging.getLogger("proctor.engine")


@dataclass(frozen=True)
class TaskStats:
    sent: int
    cached: int
    skipped: int  # already had a successful record (resume)
    failed: int
    seconds: float


@dataclass(frozen=True)
class ModelSettings:
    """What the engine needs to know of a model to render its requests."""

    max_tokens: int
    temperature: float


async def run_task(
    backend: Backend,
    settings: ModelSettings,
    dataset: PreparedDataset,
    samples: list[Sample],
    store: PredictionStore,
    existing: dict[str, Record],
    cache: ResponseCache | None,
    on_record: Callable[[Record], None],
) -> TaskStats:
    started = time.perf_counter()
    pending = [s for s in samples if s.id not in existing or existing[s.id].failed]
    skipped = len(samples) - len(pending)
    requests = [
        dataset.request(s, chat=backend.chat, max_tokens=settings.max_tokens, temperature=settings.temperature)
        for s in pending
    ]
    failed = 0

    def record(sample: Sample, request: Request, response: Response) -> None:
        nonlocal failed
        rec = make_record(sample, request, response)
        store.append(rec)
        failed += rec.failed
        on_record(rec)

    # Cache hits become records at once; only the misses reach the backend.
    keys: list[str | None] = [r.key(backend.identity) if cache and r.deterministic else None for r in requests]
    hits = cache.get_many(k for k in keys if k) if cache else {}
    to_send: list[int] = []
    for i, key in enumerate(keys):
        if key and key in hits:
            record(pending[i], requests[i], _as_cached(hits[key]))
        else:
            to_send.append(i)

    def done(i: int, response: Response) -> None:
        key = keys[i]
        if cache is not None and key is not None and response.ok:
            cache.put(key, response)
        record(pending[i], requests[i], response)

    if to_send:
        await _process(backend, [requests[i] for i in to_send], lambda j, resp: done(to_send[j], resp))

    return TaskStats(
        sent=len(to_send),
        cached=len(requests) - len(to_send),
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - started,
    )


def _as_cached(response: Response) -> Response:
    from dataclasses import replace

    return replace(response, cached=True, latency_s=0.0, attempts=0)


async def _process(backend: Backend, requests: list[Request], handle: Callable[[int, Response], None]) -> None:
    """Call the backend; deliver every response on the event loop thread, each index once."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    seen: set[int] = set()

    def deliver(i: int, response: Response) -> None:
        if i in seen or not 0 <= i < len(requests):
            log.warning("backend %s answered request %d twice or out of range; ignored", backend.name, i)
            return
        seen.add(i)
        handle(i, response)

    def on_response(i: int, response: Response) -> None:
        # Local backends may answer from their worker thread; records are written on the loop.
        if threading.get_ident() == loop_thread:
            deliver(i, response)
        else:
            loop.call_soon_threadsafe(deliver, i, response)

    await backend.process(requests, on_response)
    await asyncio.sleep(0)  # run callbacks a worker thread queued before process() returned
    for i in range(len(requests)):
        if i not in seen:
            deliver(i, Response(error=f"backend {backend.name} returned no response for this request"))
