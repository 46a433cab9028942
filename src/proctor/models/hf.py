"""HFBackend: a local Hugging Face checkpoint run with transformers (extra `proctor[hf]`).

    backend = HFBackend(HFModelConfig(path="Qwen/Qwen2.5-0.5B-Instruct"))
    await backend.start()
    await backend.process(requests, on_response)
    await backend.close()

Batches run one at a time in a worker thread (the event loop stays free). Every
`process` call in flight feeds one queue: each batch is the longest requests of one kind
waiting in it, whichever call (task, subject, dataset) they came from, so that 57 small
subjects cost what one large subject with the same questions costs, and padding is small.
A response never depends on its batch mates (left padding, an attention mask, per-row
limits), so how calls were batched together does not change an answer. Besides the async Backend protocol there is a small
blocking API for callers that own their threads (e.g. `proctor serve`):
`run_requests`, `generate_batch`, `loglikelihood_batch`, `prompt_logprobs_sync`;
call them only after `start()`. Heavy imports (torch, transformers) happen in start().
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from proctor.config.schema import HFModelConfig, model_abbr
from proctor.core import Request, Response
from proctor.errors import BackendError, MissingExtraError
from proctor.models.base import OnResponse, PromptLogprobs, local_settings_tag

if TYPE_CHECKING:
    from proctor.models.hf_loading import LoadedModel

log = logging.getLogger("proctor.models.hf")

GATHER_S = 0.005
"""When the shared queue starts after being empty, the first batch waits until no new
request came for this long (at most GATHER_MAX_S)."""
GATHER_MAX_S = 0.1
POOL_BATCHES = 4
"""Requests are taken from the queue this many batches at a time, one pool: greedy generation
decodes them together (a decode step costs about twice as much for 4x the rows; see
hf_generate), and prompts that begin alike share that part (hf_prefill). Forward passes still
hold at most batch_size prompts."""


def require_hf_extra() -> None:
    """MissingExtraError unless torch and transformers are importable."""
    for module in ("torch", "transformers", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("hf", module)


@dataclass(frozen=True)
class _Prepared:
    """A request turned into tokens (or an error to answer with)."""

    index: int
    length: int  # sort key: tokens in the longest sequence
    gen: Any = None  # hf_generate.GenInput
    jobs: tuple[Any, ...] = ()  # hf_loglikelihood.ScoreJob(s)
    continuation_lengths: tuple[int, ...] = ()
    temperature: float = 0.0
    error: str | None = None
    prefix_key: bytes = b""  # its prompt tokens as hf_pooling.prefix_key: pools keep alike prompts together

    @property
    def room(self) -> int:
        """The tokens it may add to its row of the KV cache (what it may generate)."""
        return self.gen.max_tokens if self.gen is not None else 0

    @property
    def group(self) -> tuple[Any, ...]:
        """Requests that may share a batch: same kind (and, to generate, same temperature)."""
        return ("generate", self.temperature) if self.gen is not None else ("loglikelihood",)


@dataclass(eq=False)
class _Call:
    """One `process` call whose requests wait in the shared queue."""

    on_response: OnResponse
    done: asyncio.Future[None]
    base: int  # its request i went into the queue as number base + i
    left: int  # responses still to deliver
    dropped: bool = False  # cancelled, failed or answered: nothing more is delivered


@dataclass(eq=False)
class _Entry:
    prepared: _Prepared
    call: _Call
    # Its prefix cluster among the requests of its group waiting when that was last computed
    # (again whenever requests join: taking some out leaves the others' clusters as they were).
    cluster: int = 0

    @property
    def key(self) -> tuple[int, int]:
        # Ascending sort, batches taken from the end: longest first, then first come.
        return (self.prepared.length, -self.prepared.index)


class _SharedQueue:
    """The prepared requests of every `process` call in flight, grouped by what may share a
    batch. Filled on the event loop, emptied by the worker thread one pool at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[tuple[Any, ...], list[_Entry]] = {}
        self._unsorted: set[tuple[Any, ...]] = set()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._groups.values())

    def add(self, entries: Sequence[_Entry]) -> None:
        with self._lock:
            for e in entries:
                self._groups.setdefault(e.prepared.group, []).append(e)
                self._unsorted.add(e.prepared.group)

    def take(self, rows_for: Callable[[int, int], int]) -> list[_Entry]:
        """The next pool of the group that holds the longest waiting request: whole clusters
        of requests that begin alike, longest first, at most `rows_for(longest prompt, most
        new tokens)` rows (hf_pooling.pick_pool); requests of dropped calls are discarded."""
        from proctor.models.hf_pooling import pick_pool, prefix_clusters

        with self._lock:
            for name in self._unsorted:
                group = self._groups[name]
                group[:] = [e for e in group if not e.call.dropped]
                group.sort(key=lambda e: e.key)
                for e, number in zip(group, prefix_clusters([e.prepared.prefix_key for e in group])):
                    e.cluster = number
            self._unsorted.clear()
            while True:
                live = {k: g for k, g in self._groups.items() if g}
                if not live:
                    self._groups.clear()
                    return []
                name, group = max(live.items(), key=lambda item: item[1][-1].key)
                group[:] = [e for e in group if not e.call.dropped]
                if not group:
                    continue
                batch = pick_pool(group[::-1], lambda e: e.cluster, lambda e: e.prepared.length,
                                  lambda e: e.prepared.room, rows_for)
                taken = set(map(id, batch))
                group[:] = [e for e in group if id(e) not in taken]
                return batch

    def calls(self) -> set[_Call]:
        with self._lock:
            return {e.call for g in self._groups.values() for e in g}

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._unsorted.clear()


class HFBackend:
    """A transformers causal LM behind the Backend protocol (see proctor.models.base)."""

    def __init__(self, config: HFModelConfig) -> None:
        require_hf_extra()
        self.config = config
        self.name = model_abbr(config)
        self._lm: LoadedModel | None = None
        # One batch uses the model (and the tokenizer, which is not thread-safe) at a time.
        self._lock = threading.Lock()
        # One worker thread: batches of concurrent process() calls queue up here.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proctor-hf")
        self._warned_truncation = False
        # The shared queue of all process() calls, and the coroutine that serves it.
        self._queue = _SharedQueue()
        self._serving: asyncio.Task[None] | None = None
        self._calls: set[_Call] = set()  # calls with requests not answered yet
        self._numbered = 0  # requests queued so far: each gets a number unique to this backend

    # -- protocol -----------------------------------------------------------------

    @property
    def identity(self) -> str:
        """The checkpoint's identity, plus the settings that change answers (chat template
        kwargs, reasoning markers: stop strings wait for the thought to close)."""
        return self._loaded.identity + local_settings_tag(self.config)

    @property
    def chat(self) -> bool:
        return self._loaded.chat

    @property
    def batch_size(self) -> int:
        """The batch size in use ('auto' resolved); only valid after start()."""
        return self._loaded.batch_size

    async def start(self) -> None:
        from proctor.models.hf_loading import load_model

        if self._lm is None:
            self._lm = await asyncio.to_thread(load_model, self.config)

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        """Answer `requests` through the shared queue: batched, longest first, with the
        requests of every other call in flight (other tasks, subjects, datasets)."""
        if not requests:
            return
        loop = asyncio.get_running_loop()
        base = self._numbered  # the call's request i is queued as number base + i
        self._numbered += len(requests)
        call = _Call(on_response, loop.create_future(), base=base, left=len(requests))
        self._calls.add(call)
        try:
            failed, queued = await loop.run_in_executor(self._executor, self._prepare_and_queue, requests, call)
            for p in failed:
                self._answer(call, p.index, Response(error=p.error))
            if queued and (self._serving is None or self._serving.done()):
                self._serving = asyncio.ensure_future(self._serve())
            await call.done
        finally:
            call.dropped = True  # cancelled: its requests still waiting are not run
            self._calls.discard(call)

    def _prepare_and_queue(self, requests: Sequence[Request], call: _Call) -> tuple[list[_Prepared], int]:
        """(worker thread) Tokenize and queue the requests of one call; (those that failed, how
        many were queued). Queued here, not on the loop, so that a batch taken after this job
        (jobs run in order on the one worker thread) sees every request prepared before it."""
        prepared = self._prepare_all(requests, call.base)
        queued = [_Entry(p, call) for p in prepared if p.error is None]
        self._queue.add(queued)
        return [p for p in prepared if p.error is not None], len(queued)

    def _answer(self, call: _Call, index: int, response: Response) -> None:
        """Deliver one response on the event loop; an error raised by the callback (a
        record that cannot be written) ends that call, not the others."""
        if call.dropped:
            return
        try:
            call.on_response(index - call.base, response)
        except BaseException as exc:
            call.dropped = True
            if not call.done.done():
                call.done.set_exception(exc)
            return
        call.left -= 1
        if call.left == 0:
            call.dropped = True
            if not call.done.done():
                call.done.set_result(None)

    async def _serve(self) -> None:
        """Run batches from the shared queue until it is empty."""
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        try:
            # The queue was empty: tasks that start together (the subjects of a run, right after
            # the model loaded) arrive one after another; let them come before the first batch,
            # so that it is the longest of all of them.
            deadline = loop.time() + GATHER_MAX_S
            seen = -1
            while seen != self._numbered and loop.time() < deadline:
                seen = self._numbered
                await asyncio.sleep(GATHER_S)
            while True:
                ran = await loop.run_in_executor(self._executor, self._run_next, me)
                if ran is None:
                    # Checked on the loop thread, where requests are queued: none can slip in.
                    if len(self._queue) == 0:
                        return
                    continue
                for entry, response in ran:
                    self._answer(entry.call, entry.prepared.index, response)
        except asyncio.CancelledError:
            self._fail_waiting(BackendError(f"model {self.name} was closed"))
            raise
        except Exception as exc:  # the worker itself failed (not one batch): every caller hears it
            self._fail_waiting(exc)

    def _fail_waiting(self, error: BaseException) -> None:
        for call in list(self._calls):
            call.dropped = True
            if not call.done.done():
                call.done.set_exception(error)
        self._calls.clear()
        self._queue.clear()

    def _run_next(self, server: Any) -> list[tuple[_Entry, Response]] | None:
        """(worker thread) Take the next batch from the queue and run it; None when empty."""
        if server is not self._serving:
            return None  # queued by a server that has since stopped (a closed event loop)
        batch = self._queue.take(self._pool_rows)
        if not batch:
            return None
        answers = self._run_with_fallback([e.prepared for e in batch])
        return list(zip(batch, answers))

    async def close(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None and not serving.done():
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        self._queue.clear()
        lm, self._lm = self._lm, None
        executor = self._executor
        # A fresh (thread-less until used) pool, so that start() may be called again.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proctor-hf")
        await asyncio.to_thread(executor.shutdown, wait=True)
        if lm is not None:
            del lm  # the last reference to the weights: their GPU memory can now be freed
            _empty_cuda_cache()

    async def prompt_logprobs(self, prompts: Sequence[str]) -> list[PromptLogprobs]:
        """Per-token log-probs of each prompt (OpenAI echo + logprobs), in prompt order."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.prompt_logprobs_sync, prompts)

    # -- blocking API ---------------------------------------------------------------

    def run_requests(self, requests: Sequence[Request]) -> list[Response]:
        """Answer requests of any kind, in order (blocking; batches like process())."""
        answers: list[Response | None] = [None] * len(requests)
        prepared = self._prepare_all(requests)
        for p in prepared:
            if p.error is not None:
                answers[p.index] = Response(error=p.error)
        for batch in self._plan(prepared):
            for p, response in zip(batch, self._run_with_fallback(batch)):
                answers[p.index] = response
        return [a if a is not None else Response(error="no answer") for a in answers]

    def generate_batch(self, requests: Sequence[Request]) -> list[Response]:
        """Generate for `generate` requests, in order (blocking)."""
        return self.run_requests(requests)

    def loglikelihood_batch(self, requests: Sequence[Request]) -> list[Response]:
        """Score `loglikelihood` requests, in order (blocking)."""
        return self.run_requests(requests)

    def prompt_logprobs_sync(self, prompts: Sequence[str]) -> list[PromptLogprobs]:
        """Blocking form of `prompt_logprobs`. Raises (e.g. out of memory for one prompt
        alone), since the caller answers one HTTP request with it."""
        from proctor.models.hf_loglikelihood import tokenize_prompts

        lm = self._loaded
        with self._lock:
            encoded, truncated_from = tokenize_prompts(lm.tokenizer, prompts,
                                                       self.config.max_seq_len)
        if truncated_from is not None:
            self._warn_truncation(truncated_from)
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i][0]))
        results: list[PromptLogprobs | None] = [None] * len(prompts)
        size = lm.batch_size
        for at in range(0, len(order), size):
            chunk = order[at: at + size]
            for i, r in zip(chunk, self._prompt_logprobs_halving([encoded[i] for i in chunk])):
                results[i] = r
        return [r for r in results if r is not None]

    def _prompt_logprobs_halving(self, encoded: list[Any]) -> list[PromptLogprobs]:
        from proctor.models.hf_loglikelihood import prompt_logprobs_batch

        lm = self._loaded
        try:
            with self._lock:
                return prompt_logprobs_batch(lm.model, lm.tokenizer, lm.device, encoded)
        except Exception as exc:
            if not _is_oom(exc) or len(encoded) == 1:
                raise
            _empty_cuda_cache()
            half = (len(encoded) + 1) // 2
            return (self._prompt_logprobs_halving(encoded[:half])
                    + self._prompt_logprobs_halving(encoded[half:]))

    def count_tokens(self, request: Request) -> int:
        """The tokens a request takes in this model's context: its prompt as this model renders it
        (tokenizer, chat template) plus what it may generate, or context plus longest continuation."""
        from proctor.models.hf_render import render_generate

        lm = self._loaded
        if request.kind == "loglikelihood":
            longest = max(request.continuations, key=len, default="")
            return len(lm.tokenizer((request.context or "") + longest)["input_ids"])
        return (render_generate(lm.tokenizer, request, lm.chat, 1 << 30, self.config.chat_template_kwargs).full_length
                + request.max_tokens)

    # -- internals ------------------------------------------------------------------

    @property
    def _loaded(self) -> LoadedModel:
        if self._lm is None:
            raise RuntimeError(f"HFBackend '{self.name}' is not started: await start() first")
        return self._lm

    def _prepare_all(self, requests: Sequence[Request], base: int = 0) -> list[_Prepared]:
        with self._lock:
            return [self._prepare(base + i, r) for i, r in enumerate(requests)]

    def _prepare(self, index: int, request: Request) -> _Prepared:
        try:
            if request.kind == "generate":
                return self._prepare_generate(index, request)
            if request.kind == "loglikelihood":
                return self._prepare_loglikelihood(index, request)
            return _Prepared(index=index, length=0, error=f"unknown request kind {request.kind!r}")
        except Exception as exc:  # one bad request (e.g. a template error) is that request's error
            return _Prepared(index=index, length=0, error=f"{type(exc).__name__}: {exc}")

    def _prepare_generate(self, index: int, request: Request) -> _Prepared:
        from proctor.models.hf_generate import GenInput
        from proctor.models.hf_pooling import prefix_key
        from proctor.models.hf_render import render_generate
        from proctor.models.thought import thought_for

        lm = self._loaded
        rendered = render_generate(lm.tokenizer, request, lm.chat, self.config.max_seq_len,
                                   self.config.chat_template_kwargs)
        if rendered.truncated:
            self._warn_truncation(rendered.full_length, len(rendered.ids))
        thought = thought_for(self.config.reasoning_markers(), lm.tokenizer.decode(rendered.ids[-16:]))
        gen = GenInput(ids=rendered.ids, max_tokens=request.max_tokens, stop=tuple(request.stop), thought=thought)
        return _Prepared(index=index, length=len(rendered.ids), gen=gen,
                         temperature=request.temperature, prefix_key=prefix_key(rendered.ids))

    def _prepare_loglikelihood(self, index: int, request: Request) -> _Prepared:
        from proctor.models.hf_loglikelihood import plan_jobs, tokenize_scored
        from proctor.models.hf_pooling import prefix_key

        if request.context is None:
            return _Prepared(index=index, length=0, error="loglikelihood request has no context")
        lm = self._loaded
        scored = [
            tokenize_scored(lm.tokenizer, request.context, c, self.config.max_seq_len)
            for c in request.continuations
        ]
        for s in scored:
            if s.truncated:
                self._warn_truncation(s.full_length)
        jobs = plan_jobs(index, scored)
        return _Prepared(
            index=index,
            length=max((len(s.ids) for s in scored), default=0),
            jobs=tuple(jobs),
            continuation_lengths=tuple(len(s.ids) - s.start for s in scored),
            prefix_key=prefix_key(jobs[0].prefix) if jobs else b"",
        )

    def _warn_truncation(self, length: int, budget: int | None = None) -> None:
        if self._warned_truncation:
            return
        self._warned_truncation = True
        keep = budget if budget is not None else self.config.max_seq_len
        log.warning(
            "model %s: an input of %d tokens is longer than allowed (max_seq_len %d%s); "
            "keeping its last %d tokens (truncated from the left). Further truncations "
            "are not reported.", self.name, length, self.config.max_seq_len,
            " minus max_tokens" if budget is not None else "", keep,
        )

    def _pool_rows(self, longest: int, room: int) -> int:
        """The most rows of one pool whose longest prompt has `longest` tokens and whose rows
        may add `room` more: POOL_BATCHES batches, and a KV cache of at most batch_size x
        max_seq_len tokens (what one batch of the longest prompts allowed may hold, so that
        pooling short prompts never needs more memory than that)."""
        size = self._loaded.batch_size
        return min(size * POOL_BATCHES, max(size, size * self.config.max_seq_len // max(1, longest + room)))

    def _plan(self, prepared: Sequence[_Prepared]) -> list[list[_Prepared]]:
        """Pools of same-kind requests as the shared queue forms them: prompts that begin alike
        together, longest first (an OOM shows up at once)."""
        from proctor.models.hf_pooling import pick_pool, prefix_clusters

        groups: dict[tuple[Any, ...], list[_Prepared]] = {}
        for p in prepared:
            if p.error is None:
                groups.setdefault(p.group, []).append(p)
        pools: list[list[_Prepared]] = []
        for group in groups.values():
            group.sort(key=lambda p: (-p.length, p.index))
            cluster = dict(zip((p.index for p in group), prefix_clusters([p.prefix_key for p in group])))
            while group:
                pool = pick_pool(group, lambda p: cluster[p.index], lambda p: p.length,
                                 lambda p: p.room, self._pool_rows)
                taken = {p.index for p in pool}
                group = [p for p in group if p.index not in taken]
                pools.append(pool)
        return pools

    def _run_with_fallback(self, batch: list[_Prepared], attempt: int = 1) -> list[Response]:
        """Run a batch; on out-of-memory retry it in halves, and isolate other failures
        to the request that causes them. Only single requests end as errors."""
        try:
            started = time.perf_counter()
            with self._lock:
                answers = self._run_batch(batch)
            latency = time.perf_counter() - started
            return [replace(a, latency_s=latency, attempts=attempt) for a in answers]
        except Exception as exc:
            oom = _is_oom(exc)
            if oom:
                _empty_cuda_cache()
            if len(batch) > 1:
                if oom:
                    half = (len(batch) + 1) // 2
                    return (self._run_with_fallback(batch[:half], attempt + 1)
                            + self._run_with_fallback(batch[half:], attempt + 1))
                log.warning("model %s: a batch of %d failed (%s: %s); retrying one by one",
                            self.name, len(batch), type(exc).__name__, exc)
                return [r for p in batch for r in self._run_with_fallback([p], attempt + 1)]
            what = "out of memory" if oom else f"{type(exc).__name__}: {exc}"
            return [Response(error=f"{self.name}: {what}", attempts=attempt)]

    def _run_batch(self, batch: Sequence[_Prepared]) -> list[Response]:
        if batch[0].gen is not None:
            return self._run_generate(batch)
        return self._run_loglikelihood(batch)

    def _run_generate(self, batch: Sequence[_Prepared]) -> list[Response]:
        from proctor.models.hf_generate import generate_batch

        lm = self._loaded
        answers = []
        for pool in self._pools(batch):
            outs = generate_batch(lm.model, lm.tokenizer, lm.device, [p.gen for p in pool],
                                  temperature=pool[0].temperature,
                                  generation_kwargs=self.config.generation_kwargs,
                                  prefill_rows=lm.batch_size)
            answers += [
                Response(text=o.text, prompt_tokens=o.prompt_tokens,
                         completion_tokens=o.completion_tokens, finish_reason=o.finish_reason,
                         reasoning_ended=o.reasoning_ended, reasoning_tokens=o.reasoning_tokens)
                for o in outs
            ]
        return answers

    def _pools(self, batch: Sequence[_Prepared]) -> list[Sequence[_Prepared]]:
        """`batch` cut into pools of at most `_pool_rows` rows (a batch taken from the queue is
        one already; a half of one retried after an out-of-memory too)."""
        rows = self._pool_rows(max(p.length for p in batch), max(p.room for p in batch))
        return [batch[i: i + rows] for i in range(0, len(batch), rows)]

    def _run_loglikelihood(self, batch: Sequence[_Prepared]) -> list[Response]:
        from proctor.models.hf_loglikelihood import score_jobs

        lm = self._loaded
        values: dict[Any, list[float]] = {}
        for pool in self._pools(batch):
            jobs = [j for p in pool for j in p.jobs]
            for job, sums in zip(jobs, score_jobs(lm.model, lm.tokenizer.pad_token_id, lm.device,
                                                  jobs, prefill_rows=lm.batch_size)):
                values[job.key] = sums
        answers = []
        for p in batch:
            if len(p.jobs) == 1 and p.jobs[0].key == p.index:
                lls = values[p.index]
            else:  # one job per continuation, keyed (index, i)
                lls = [values[(p.index, i)][0] for i in range(len(p.continuation_lengths))]
            answers.append(Response(
                loglikelihoods=tuple(lls),
                continuation_lengths=p.continuation_lengths,
                prompt_tokens=p.length,
            ))
        return answers


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()

