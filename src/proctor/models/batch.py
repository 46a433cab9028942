"""The Batch API path of the API backend (`batch: true`, `--api-batch`): half price, within 24 h.

`ApiBackend.process()` hands its requests here instead of sending them. Requests that arrive
within `GATHER_S` of each other (all tasks of a run start at once) are written as JSONL batch
files in OpenAI's input format (the bodies the online requests would send, one endpoint per
file, split at `batch_max_requests` / `batch_max_bytes`), uploaded (POST /files), submitted
(POST /batches) and recorded in the model's batch folder before any waiting; GET /batches/{id}
is polled with back-off; the output and error files are downloaded and each line becomes the
Response an online answer would (the same parsers, so the same records, cache and scores).

A resumed run (`-r`) recognises its pending requests among the recorded lines by their custom
ids (a digest of the body) and waits for those batches instead of submitting again. Lines that
failed or expired are retried online (`batch_retry: online`) or in a new batch (`batch`, up to
`retry` more batches).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlsplit

from proctor.core import Request, Response
from proctor.models.api_errors import Failure, Unusable, printable
from proctor.models.api_http import Reply
from proctor.models.api_payloads import Parser, encode_body, plan_request
from proctor.models.base import OnResponse
from proctor.models.batch_client import TERMINAL, BatchClient, NotFound, TransientError, safe_id
from proctor.models.batch_files import BatchEntry, BatchState, batch_line, body_digest, split_sizes

if TYPE_CHECKING:
    from proctor.models.api import ApiBackend

log = logging.getLogger(__name__)

# Requests arriving this close together go into one submission: a run's tasks all hand theirs
# over within a few event-loop turns. A late one only makes one more batch, never a wrong answer.
GATHER_S = 0.3
_POLL_GROWTH = 1.5
_MAX_MESSAGE = 300


@dataclass(eq=False)
class _Line:
    """One pending request on its way through a batch."""

    request: Request
    path: str  # the endpoint below api_base, e.g. /chat/completions
    url: str  # the batch line's url, e.g. /v1/chat/completions
    content: bytes  # the body, encoded as the online request sends it
    parse: Parser
    logprobs: bool
    digest: str
    deliver: Callable[[Response], None]
    future: asyncio.Future[None]

    def finish(self, response: Response) -> None:
        if self.future.done():
            return
        try:
            self.deliver(response)
        except BaseException as exc:  # a record that cannot be written stops the task
            self.future.set_exception(exc)
        else:
            self.future.set_result(None)


@dataclass
class _Results:
    """What a finished batch gave: its status, its result lines by custom id, and why it failed."""

    batch_id: str
    status: str
    lines: dict[str, Any] = field(default_factory=dict)
    errors: str = ""
    # Custom ids with two different result lines: which one answers the request is a guess.
    conflicting: set[str] = field(default_factory=set)


class BatchSender:
    """Sends an ApiBackend's requests through the Batch API (see the module docstring)."""

    def __init__(self, api: ApiBackend) -> None:
        self.api = api
        self.config = api.config
        self._state: BatchState | None = None
        self._claimable: dict[str, list[tuple[BatchEntry, str]]] = {}  # digest -> recorded lines
        self._used: set[str] = set()  # custom ids of live entries
        self._resumed: set[str] = set()  # entries uploaded by an earlier process
        self._queue: list[_Line] = []
        self._arrivals = 0
        self._flusher: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._fetches: dict[str, asyncio.Task[_Results]] = {}
        self._base_path = urlsplit(api._base).path.rstrip("/")
        self._client = BatchClient(api._url, api._display_base, api._credentials, self.config.timeout,
                                   self.config.retry + 1)

    def attach(self, folder: Path) -> None:
        """Keep batch files and state in `folder` (the run's `batches/<model>/`); load what is there."""
        self._state = state = BatchState.load(folder)
        for entry in state.live():
            if entry.file_id is not None:
                self._resumed.add(entry.name)
            for custom_id in state.ids(entry):
                self._used.add(custom_id)
                self._claimable.setdefault(custom_id.rsplit("-", 1)[0], []).append((entry, custom_id))

    # ------------------------------------------------------------------ requests

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        """Queue the requests for the next submission; return once every one is answered."""
        if self._state is None:
            raise RuntimeError("the Batch API needs a run folder (ApiBackend.attach_run) before process()")
        loop = asyncio.get_running_loop()
        futures = []
        settings, identity = self.api._body_settings(), self.api.identity
        for index, request in enumerate(requests):
            try:
                path, body, parse = plan_request(request, model=self.api.model_id, chat=self.api.chat,
                                                 display_base=self.api._display_base, settings=settings)
            except Unusable as exc:
                on_response(index, Response(error=str(exc), attempts=0))
                continue
            if path is None:  # nothing to ask
                on_response(index, parse({}))
                continue
            content = encode_body(body)
            url = self._base_path + path
            line = _Line(request, path, url, content, parse, bool(body.get("echo")),
                         body_digest(identity, url, content), partial(on_response, index), loop.create_future())
            self._queue.append(line)
            futures.append(line.future)
        if not futures:
            return
        self._arrivals += 1
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_when_quiet())
        await asyncio.gather(*futures)

    async def close(self) -> None:
        tasks = [t for t in (self._flusher, *self._rounds, *self._fetches.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _flush_when_quiet(self) -> None:
        seen = -1
        while seen != self._arrivals:
            seen = self._arrivals
            await asyncio.sleep(GATHER_S)
        self._flusher = None
        lines, self._queue = self._queue, []
        task = asyncio.ensure_future(self._guarded(lines))
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    async def _guarded(self, lines: list[_Line]) -> None:
        """A round whose failure (a rejected key, a server without the Batch API) ends its callers."""
        try:
            await self._round(lines)
        except asyncio.CancelledError:
            for line in lines:
                line.future.cancel()
            raise
        except BaseException as exc:
            for line in lines:
                if not line.future.done():
                    line.future.set_exception(exc)

    async def _round(self, lines: list[_Line], round_: int = 0) -> None:
        """Pick up recorded lines, submit the rest, and settle every batch they are in."""
        claimed: dict[str, tuple[BatchEntry, list[tuple[_Line, str]]]] = {}
        fresh = []
        for line in lines:
            recorded = self._claimable.get(line.digest) if round_ == 0 else None
            if recorded:
                entry, custom_id = recorded.pop(0)
                claimed.setdefault(entry.name, (entry, []))[1].append((line, custom_id))
            else:
                fresh.append(line)
        if claimed:
            log.warning("%s: %d requests were submitted to the Batch API before (%d batches); waiting for those",
                        self.api.name, sum(len(p) for _, p in claimed.values()), len(claimed))
        groups = [*claimed.values(), *self._write_files(fresh, round_)]
        await asyncio.gather(*(self._settle(entry, pairs) for entry, pairs in groups))

    def _write_files(self, lines: list[_Line], round_: int) -> list[tuple[BatchEntry, list[tuple[_Line, str]]]]:
        """The batch input files of `lines` (one endpoint each, split at the limits), recorded."""
        state = self._state
        assert state is not None
        by_url: dict[str, list[_Line]] = {}
        for line in lines:
            by_url.setdefault(line.url, []).append(line)
        made = []
        for url, group in by_url.items():
            ids = [self._new_id(line.digest) for line in group]
            encoded = [batch_line(i, url, line.content) for i, line in zip(ids, group)]
            for part in split_sizes([len(e) for e in encoded], self.config.batch_max_requests,
                                    self.config.batch_max_bytes):
                entry = BatchEntry(name=state.next_name(), url=url, lines=len(part),
                                   bytes=sum(len(encoded[i]) for i in part), round=round_)
                state.write_input(entry, [ids[i] for i in part], [encoded[i] for i in part])
                state.entries.append(entry)
                made.append((entry, [(group[i], ids[i]) for i in part]))
        if made:
            state.save()
            what = "failed lines again" if round_ else "requests"
            log.warning("%s: %d %s in %d batch file%s for the Batch API (%s); results come within 24 h, and "
                        "an interrupted run picks them up with -r", self.api.name, sum(e.lines for e, _ in made),
                        what, len(made), "" if len(made) == 1 else "s", state.folder)
        return made

    def _new_id(self, digest: str) -> str:
        k = 0
        while f"{digest}-{k}" in self._used:
            k += 1
        self._used.add(f"{digest}-{k}")
        return f"{digest}-{k}"

    # ------------------------------------------------------------------- results

    async def _settle(self, entry: BatchEntry, pairs: list[tuple[_Line, str]]) -> None:
        """Wait for the entry's batch, answer its lines, and send the failed ones again."""
        task = self._fetches.get(entry.name)
        if task is None:
            task = self._fetches[entry.name] = asyncio.ensure_future(self._fetch(entry))
        results = await task
        again: list[tuple[_Line, Failure]] = []
        for line, custom_id in pairs:
            outcome = self._outcome(results, custom_id, line)
            if isinstance(outcome, Response):
                line.finish(replace(outcome, latency_s=0.0, attempts=entry.round + 1))
            elif outcome.retryable:
                again.append((line, outcome))
            else:
                line.finish(Response(error=outcome.message, attempts=entry.round + 1))
        state = self._state
        assert state is not None
        retry_in_batch = self.config.batch_retry == "batch"
        follow: list[tuple[BatchEntry, list[tuple[_Line, str]]]] = []
        if again and retry_in_batch and entry.round < self.config.retry:
            # Recorded before this entry counts as delivered: a resumed run finds the new batch.
            follow = self._write_files([line for line, _ in again], entry.round + 1)
        entry.delivered = True
        state.save()
        if not again:
            return
        log.warning("%s: %d requests of batch %s have no answer (%s); %s", self.api.name, len(again),
                    results.batch_id, again[0][1].message,
                    "sending them again in a new batch" if follow else
                    "sending them online" if not retry_in_batch else "giving up (no retries left)")
        if follow:
            await asyncio.gather(*(self._settle(e, p) for e, p in follow))
        elif retry_in_batch:
            tries = f" (after {entry.round + 1} batches)"
            for line, failure in again:
                line.finish(Response(error=f"{failure.message}{tries}", attempts=entry.round + 1))
        else:
            await asyncio.gather(*(self._online(line) for line, _ in again))

    async def _online(self, line: _Line) -> None:
        line.finish(await self.api._answer(self.api._loop_state(), line.request))

    async def _fetch(self, entry: BatchEntry) -> _Results:
        """Upload, submit (each step recorded), poll until the batch ends, download its files."""
        state, loop_state = self._state, self.api._loop_state()
        assert state is not None
        if entry.file_id is None:
            entry.file_id = await self._client.upload(loop_state, f"{entry.name}.jsonl",
                                                      state.input_path(entry).read_bytes())
            state.save()
        if entry.batch_id is None:
            # Killed between creating the batch and recording it: the server knows it by its file.
            found = await self._client.find(loop_state, entry.file_id) if entry.name in self._resumed else None
            batch = found or await self._client.create(loop_state, entry.file_id, entry.url,
                                                       {"proctor_batch": entry.name})
            entry.batch_id, entry.status = batch["id"], _status(batch)
            state.save()
            log.info("%s: %s is batch %s (%d requests)", self.api.name, entry.name, entry.batch_id, entry.lines)
        batch = await self._poll(entry)
        results = _Results(batch_id=entry.batch_id, status=_status(batch), errors=self._errors(batch))
        # The output file first: a line in both counts as answered.
        for kind in ("output", "error"):
            file_id = safe_id(batch.get(f"{kind}_file_id"))
            if file_id is None:
                continue
            path = state.result_path(entry, kind)
            if getattr(entry, f"{kind}_file_id") == file_id and path.is_file():
                content = path.read_bytes()
            else:
                try:
                    content = await self._client.content(loop_state, file_id)
                except NotFound as exc:  # deleted by the provider since: its lines are asked again
                    log.warning("%s: the %s file of batch %s is gone (%s); its requests are sent again",
                                self.api.name, kind, entry.batch_id, exc)
                    continue
                state.write_result(entry, kind, content)
                setattr(entry, f"{kind}_file_id", file_id)
                state.save()
            for raw in content.splitlines():
                try:
                    item = json.loads(raw)
                except ValueError:
                    continue  # a broken line: its request counts as unanswered
                custom_id = item.get("custom_id") if isinstance(item, dict) else None
                if isinstance(custom_id, str):
                    if results.lines.setdefault(custom_id, item) != item:
                        results.conflicting.add(custom_id)
        return results

    async def _poll(self, entry: BatchEntry) -> dict[str, Any]:
        """GET /batches/{id} until the batch ends, waiting longer each time (up to batch_poll_max_s)."""
        state = self._state
        assert state is not None and entry.batch_id is not None
        delay = self.config.batch_poll_s
        while True:
            try:
                batch = await self._client.retrieve(self.api._loop_state(), entry.batch_id)
            except TransientError as exc:  # the server is busy or away for a while: keep waiting
                log.debug("%s: batch %s: %s", self.api.name, entry.batch_id, exc)
            except NotFound as exc:  # the provider no longer knows it: its lines are asked again
                log.warning("%s: batch %s is gone (%s); its requests are sent again", self.api.name,
                            entry.batch_id, exc)
                entry.status = "lost"
                state.save()
                return {"id": entry.batch_id, "status": "lost"}
            else:
                status = _status(batch)
                if status != entry.status:
                    entry.status = status
                    state.save()
                    log.info("%s: batch %s is %s", self.api.name, entry.batch_id, status)
                if status in TERMINAL:
                    return batch
            await asyncio.sleep(delay)
            delay = min(delay * _POLL_GROWTH, max(self.config.batch_poll_max_s, self.config.batch_poll_s))

    def _outcome(self, results: _Results, custom_id: str, line: _Line) -> Response | Failure:
        """The Response of one result line, judged as the online answer would be."""
        item = results.lines.get(custom_id)
        where = f"batch {results.batch_id} ({results.status})"
        if custom_id in results.conflicting:
            return Failure(f"{where} returned two different results for this request; it is asked again",
                           retryable=True)
        if item is None:
            if results.status == "failed":
                return Failure(f"{where}{': ' + results.errors if results.errors else ''}", retryable=True)
            return Failure(f"{where} returned no result for this request", retryable=True)
        response = item.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            body = response.get("body")
            content = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8")
            return self.api._judge_reply(Reply(response["status_code"], "", {}, content), line.path, line.parse,
                                         line.logprobs)
        error = item.get("error")
        return Failure(f"{where}: {self._said(error)}", retryable=True)

    def _errors(self, batch: dict[str, Any]) -> str:
        """A failed batch's reasons (its `errors.data`), in one line."""
        errors = batch.get("errors")
        data = errors.get("data") if isinstance(errors, dict) else None
        if not isinstance(data, list):
            return ""
        return "; ".join(self._said(e) for e in data[:3])

    def _said(self, error: Any) -> str:
        """`code: message` of an error object from the server: redacted, printable, short."""
        if isinstance(error, dict):
            parts = [str(error[k]) for k in ("code", "message") if error.get(k)]
            text = ": ".join(parts) or "an error without a message"
        else:
            text = "no response and no error"
        text = printable(" ".join(self.api._credentials.redact(text).split()))
        return text[:_MAX_MESSAGE]


def _status(batch: dict[str, Any]) -> str:
    status = batch.get("status")
    return printable(status)[:40] if isinstance(status, str) else "unknown"
