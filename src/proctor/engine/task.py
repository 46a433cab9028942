"""Running one task: send what has no successful record, write a record per response."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

from proctor.core import Item, Record, Request, Response
from proctor.engine.cache import ResponseCache
from proctor.engine.records import make_record, prompt_as_sent
from proctor.engine.store import PredictionStore
from proctor.models.base import Backend
from proctor.reasoning import ReasoningMarkers

log = logging.getLogger("proctor.engine")
_KEYS_PER_TURN = 64  # cache keys hashed between two turns of the event loop
# Models already told (once per process) that their earlier runs' answers are not reused.
_TOLD_UNVERIFIED: set[str] = set()


@dataclass(frozen=True)
class TaskStats:
    sent: int
    cached: int
    skipped: int  # already had a successful record (resume)
    failed: int
    seconds: float
    stale: int = 0  # had a record made with another prompt: sent again


def has_answer(record: Record | None) -> bool:
    return record is not None and not record.failed


def count_unanswered(items: Iterable[Item], records: Mapping[str, Record]) -> int:
    """Items without a successful record (failed or never answered): what `-r` sends again."""
    return sum(1 for item in items if not has_answer(records.get(item.id)))


def is_done(record: Record | None, request: Request) -> bool:
    """An item is done when it has a successful record made with exactly this prompt."""
    return has_answer(record) and record.prompt == prompt_as_sent(request)  # type: ignore[union-attr]


def pending_items(
    items: Sequence[tuple[Item, Request]], existing: Mapping[str, Record]
) -> list[tuple[Item, Request]]:
    return [(item, r) for item, r in items if not is_done(existing.get(item.id), r)]


async def run_task(
    backend: Backend,
    items: Sequence[tuple[Item, Request]],
    store: PredictionStore,
    existing: Mapping[str, Record],
    cache: ResponseCache | None,
    on_record: Callable[[Record], None],
    run_id: str = "",
    markers: ReasoningMarkers | None = None,
) -> TaskStats:
    """Send the task's pending requests; cache hits become records without reaching the backend.

    A backend whose identity could not be verified (an API server that says nothing about the
    checkpoint it serves, and no revision set) shares cached answers within `run_id` only, so a
    server that loads another checkpoint under the same name never gets old answers.
    """
    started = time.perf_counter()
    pending = pending_items(items, existing)
    stale = sum(1 for item, _ in pending if has_answer(existing.get(item.id)))
    if stale:
        # A resumed run whose prompts changed (few-shot count, template): old answers do not count.
        log.warning("%d records of %s were made with another prompt; sending them again", stale, store.path)
    failed = 0

    def record(item: Item, request: Request, response: Response) -> None:
        nonlocal failed
        rec = make_record(item, request, response, markers)
        store.append(rec)
        failed += rec.failed
        on_record(rec)

    identity = backend.identity
    if not getattr(backend, "identity_verified", True):
        if cache is not None and cache.other_run_used(identity, run_id) and identity not in _TOLD_UNVERIFIED:
            _TOLD_UNVERIFIED.add(identity)
            log.warning(
                "%s: the answers of earlier runs are not reused, because its server names no checkpoint "
                "(no fingerprint, root or created in GET /models) and it could serve another one now; "
                "if it serves the same checkpoint, say which with --revision NAME (or `revision` in the "
                "model's config) and later runs reuse its answers", backend.name,
            )
        identity = f"{identity}|run:{run_id}"
    keys: list[str | None] = []
    for start in range(0, len(pending), _KEYS_PER_TURN):
        if start:
            # A subject of 1,500 questions hashes for 60 ms: in turns, so that the answers of the
            # tasks already running are read (and their slots refilled) meanwhile.
            await asyncio.sleep(0)
        keys += [r.key(identity) if cache is not None and r.deterministic else None
                 for _, r in pending[start : start + _KEYS_PER_TURN]]
    hits = cache.get_many(k for k in keys if k) if cache is not None else {}
    to_send: list[int] = []
    for i, key in enumerate(keys):
        if pending[i][1].refusal is not None:  # never sent: its prompt does not fit the context
            record(*pending[i], Response(error=pending[i][1].refusal, attempts=0))
        elif key and key in hits:
            record(*pending[i], replace(hits[key], cached=True, latency_s=0.0, attempts=0))
        else:
            to_send.append(i)

    def done(i: int, response: Response) -> None:
        key = keys[i]
        # Cached before it is recorded: a crash in between costs a cache hit, not a request.
        if cache is not None and key is not None and response.ok:
            cache.put(key, response)
        record(*pending[i], response)

    if to_send:
        await _process(backend, [pending[i][1] for i in to_send], lambda j, resp: done(to_send[j], resp))

    return TaskStats(
        sent=len(to_send),
        cached=len(pending) - len(to_send),
        skipped=len(items) - len(pending),
        failed=failed,
        seconds=time.perf_counter() - started,
        stale=stale,
    )


async def _process(backend: Backend, requests: list[Request], handle: Callable[[int, Response], None]) -> None:
    """Call the backend; deliver every response on the event loop thread, each index once."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    seen: set[int] = set()
    errors: list[BaseException] = []

    def deliver(i: int, response: Response) -> None:
        if errors:
            return  # the task already failed (disk full): nothing more is written
        if i in seen or not 0 <= i < len(requests):
            log.warning("backend %s answered request %d twice or out of range; ignored", backend.name, i)
            return
        seen.add(i)
        try:
            handle(i, response)
        except BaseException as exc:
            errors.append(exc)
            raise

    def deliver_later(i: int, response: Response) -> None:
        try:
            deliver(i, response)
        except BaseException:
            pass  # kept in `errors` and raised once the backend returns

    def on_response(i: int, response: Response) -> None:
        # Local backends may answer from their worker thread; records are written on the loop.
        if threading.get_ident() == loop_thread:
            deliver(i, response)
        else:
            loop.call_soon_threadsafe(deliver_later, i, response)

    await backend.process(requests, on_response)
    await asyncio.sleep(0)  # run callbacks a worker thread queued before process() returned
    if errors:
        raise errors[0]
    for i in range(len(requests)):
        if i not in seen:
            deliver(i, Response(error=f"backend {backend.name} returned no response for this request"))
