"""Groups concurrent HTTP requests into one backend call.

One consumer task owns the model: it waits for a first request, lets more
arrive for `wait_s` (or until `max_batch_size`), runs them as one
`backend.process(...)` (and one `prompt_logprobs(...)` for echo requests),
then starts again. Requests that arrive while a batch runs are queued and
form the next batch, so batches grow with load without any tuning.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Sequence

from proctor.core import Request, Response
from proctor.models.base import Backend, PromptLogprobs

ItemKind = Literal["generate", "logprobs", "token_logprobs"]


@dataclass
class _Pending:
    kind: ItemKind
    payload: Any  # a Request (generate), a prompt string (logprobs), or (ids, top_k)
    future: asyncio.Future[Any]


@dataclass
class BatchStats:
    """Counters for /health and tests: how many backend calls served how many requests."""

    batches: int = 0
    requests: int = 0
    largest_batch: int = 0
    skipped: int = 0  # requests whose client left before their batch started
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest_batch = max(self.largest_batch, size)
        # Keep only recent sizes: a long-running server must not grow without bound.
        self.sizes.append(size)
        del self.sizes[:-1000]

    def to_json(self) -> dict[str, int]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "largest_batch": self.largest_batch,
            "skipped": self.skipped,
        }


class Batcher:
    """Runs queued requests on `backend` in batches of at most `max_batch_size`."""

    def __init__(self, backend: Backend, max_batch_size: int, wait_s: float = 0.005) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._backend = backend
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop_thread: int | None = None

    @property
    def supports_logprobs(self) -> bool:
        """True when the backend can score prompts (OpenAI `echo` + `logprobs`)."""
        return callable(getattr(self._backend, "prompt_logprobs", None))

    async def start(self) -> None:
        """Start the consumer task on the running event loop."""
        self._loop_thread = threading.get_ident()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._consume(), name="proctor-serve-batcher")

    async def stop(self) -> None:
        """Stop the consumer; requests still waiting fail with a clear error."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(RuntimeError("the server is shutting down"))

    async def generate(self, request: Request) -> Response:
        """Run one generate Request in the next batch and return its Response."""
        return await self._submit("generate", request)

    async def prompt_logprobs(self, prompt: str) -> PromptLogprobs:
        """Score one prompt's tokens in the next batch."""
        return await self._submit("logprobs", prompt)

    @property
    def supports_token_logprobs(self) -> bool:
        """True when the backend can score token-id sequences (token-id prompts, top-k)."""
        from proctor.serve.token_scoring import supports_token_logprobs

        return supports_token_logprobs(self._backend)

    async def token_logprobs(self, ids: Sequence[int], top_k: int) -> Any:
        """Score one token-id sequence in the next batch: a token_scoring.ScoredIds."""
        return await self._submit("token_logprobs", (tuple(ids), top_k))

    async def _submit(self, kind: ItemKind, payload: Any) -> Any:
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(kind, payload, future))
        try:
            return await future
        except asyncio.CancelledError:
            # The client left: a cancelled future tells the consumer to skip
            # this request if its batch has not started yet.
            future.cancel()
            raise

    async def _consume(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        batch.append(self._queue.get_nowait())
                    else:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            live = [item for item in batch if not item.future.done()]
            self.stats.skipped += len(batch) - len(live)
            await self._run(live)

    async def _run(self, batch: Sequence[_Pending]) -> None:
        generate = [item for item in batch if item.kind == "generate"]
        logprobs = [item for item in batch if item.kind == "logprobs"]
        token_logprobs = [item for item in batch if item.kind == "token_logprobs"]
        if generate:
            await self._run_generate(generate)
        if logprobs:
            await self._run_logprobs(logprobs)
        if token_logprobs:
            await self._run_token_logprobs(token_logprobs)

    @staticmethod
    def _resolve(item: _Pending, result: Any = None, error: BaseException | None = None) -> None:
        if item.future.done():  # cancelled: the client is gone
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    async def _run_generate(self, items: Sequence[_Pending]) -> None:
        self.stats.record(len(items))
        results: dict[int, Response] = {}

        def on_response(index: int, response: Response) -> None:
            results[index] = response
            # Answer at once when called on our loop; a backend calling from a
            # worker thread is answered below (futures are not thread-safe).
            if threading.get_ident() == self._loop_thread:
                self._resolve(items[index], response)

        try:
            await self._backend.process([item.payload for item in items], on_response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model is unusable: fail this batch, keep serving
            for item in items:
                self._resolve(item, error=exc)
            return
        for index, item in enumerate(items):
            if index in results:
                self._resolve(item, results[index])
            else:  # a backend that forgot an index must not hang its client
                self._resolve(item, error=RuntimeError("the backend returned no response"))

    async def _run_logprobs(self, items: Sequence[_Pending]) -> None:
        # Not part of the Backend protocol: HFBackend has it (see supports_logprobs).
        scoring = self._backend.prompt_logprobs([item.payload for item in items])  # type: ignore[attr-defined]
        await self._score_batch(items, scoring, lambda item, result: result)

    async def _run_token_logprobs(self, items: Sequence[_Pending]) -> None:
        from proctor.serve.token_scoring import ScoredIds, token_logprobs

        top_k = max(top for _, top in (item.payload for item in items))

        def trimmed(item: _Pending, result: Any) -> Any:
            k = item.payload[1]  # each request gets the alternatives it asked for
            return ScoredIds(result.ids, result.logprobs, tuple(t[:k] for t in result.top), result.next_top[:k])

        await self._score_batch(items, token_logprobs(self._backend, [item.payload[0] for item in items], top_k),
                                trimmed)

    async def _score_batch(self, items: Sequence[_Pending], scoring: Awaitable[Sequence[Any]],
                           shape: Callable[[_Pending, Any], Any]) -> None:
        """Await one batch of log-prob scoring and resolve each item: its result, or the batch's
        error (the model failing must not hang any client), or "no result" for a short answer."""
        self.stats.record(len(items))
        try:
            results = await scoring
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for item in items:
                self._resolve(item, error=exc)
            return
        for item, result in zip(items, results):
            self._resolve(item, shape(item, result))
        for item in items[len(results) :]:
            self._resolve(item, error=RuntimeError("the backend returned no log-probabilities"))
