"""Asking conversations: turn t of every sample of a shard, then turn t+1 with the answers so far.

Each turn is an item of its own (`<id>#t<k>`) and one record, so a run killed between two turns
resumes at the next: the earlier turns have records made with exactly their prompt (skipped, never
asked again), and the next turn's prompt is rebuilt from those records, the same bytes as before
(its cache key too). A later turn carries the earlier turns as the model saw them (the user
message as sent) and answered them (the answer part of its reply: a reasoning model's thought is
not fed back). A turn whose earlier turn has no answer (its reasoning was cut off, or nothing
followed it) is a failed record: a conversation never goes on from an answer it does not have.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

from proctor.core import Item, Record, Request
from proctor.engine.cache import ResponseCache
from proctor.engine.prepare import PreparedDataset
from proctor.engine.store import PredictionStore
from proctor.engine.task import TaskStats, has_answer, run_task
from proctor.errors import ConfigError
from proctor.models.base import Backend
from proctor.reasoning import ReasoningMarkers, split_record

# finish_reason values of answers a server withheld (engine.evaluate scores them as such).
WITHHELD_REASONS = ("content_filter", "refused")


def _user_text(record: Record) -> str:
    """The last user message of a record's prompt as sent."""
    messages = record.prompt if isinstance(record.prompt, list) else []
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return str(message.get("content", ""))
    raise ValueError(f"record {record.item_id} has no user message")


def _next_request(dataset: PreparedDataset, item: Item, settings: Mapping[str, Any],
                  records: Mapping[str, Record]) -> Request | None:
    """Turn t's request from the records of turns 1..t-1; None while one of them has no record."""
    turn = int(item.variant["turn"])
    history: list[tuple[str, str]] = []
    for earlier in range(1, turn):
        record = records.get(f"{item.sample_id}#t{earlier}")
        if not has_answer(record):
            return None
        assert record is not None
        split = split_record(record)
        # A withheld answer (filtered, refused) is no answer either: the eval stage scores that turn
        # as withheld, so a later turn built on it would have no earlier answer to be judged with.
        status = record.finish_reason if record.finish_reason in WITHHELD_REASONS else split.status
        if status != "answered" or split.answer is None:
            request = dataset.request(item, **settings, history=history)
            return replace(request, refusal=f"turn {earlier} has no answer ({status}) to go on from")
        history.append((_user_text(record), split.answer))
    return dataset.request(item, **settings, history=history)


async def run_conversations(
    backend: Backend,
    dataset: PreparedDataset,
    items: Sequence[Item],
    settings: Mapping[str, Any],
    store: PredictionStore,
    existing: Mapping[str, Record],
    cache: ResponseCache | None,
    on_record: Callable[[Record], None],
    *,
    run_id: str = "",
    markers: ReasoningMarkers | None = None,
    model: str = "",
) -> TaskStats:
    """Ask every turn of the shard's conversations, one turn at a time; `on_record` sees each
    conversation's last record (its final turn, or the turn that failed)."""
    if not backend.chat:
        raise ConfigError(f"dataset {dataset.config.abbr} is a conversation: it needs a chat model "
                          f"({model or backend.name} is asked in plain text)")
    records = dict(existing)
    totals = dict(sent=0, cached=0, skipped=0, failed=0, seconds=0.0, stale=0)
    last = max((int(i.variant["turn"]) for i in items), default=0)
    final = {i.id for i in items if i.variant["turn"] == i.variant["turns"]}

    reported: set[str] = set()

    def seen(record: Record) -> None:
        records[record.item_id] = record
        if record.failed or record.item_id in final:
            reported.add(record.sample_id)
            on_record(record)

    for turn in range(1, last + 1):
        asked = [(item, request) for item in items if item.variant["turn"] == turn
                 for request in [_next_request(dataset, item, settings, records)] if request is not None]
        if not asked:
            continue
        stats = await run_task(backend, asked, store, records, cache, seen, run_id=run_id, markers=markers)
        for name in totals:
            totals[name] += getattr(stats, name)
    # Counted in conversations, as the plan and the progress bars count: those already done.
    totals["skipped"] = len({i.sample_id for i in items} - reported)
    return TaskStats(**totals)  # type: ignore[arg-type]
