"""The inference stage, the same for every runner: start models, run the plan, write records.

A runner only decides where each model's backend lives (this process, worker processes
pinned to GPUs, Ray actors); this module owns the plan, the stores, the cache, resume
and progress, so every runner gives the same records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from proctor.config.schema import REASONING_MAX_OUT_LEN, ApiModelConfig, RunConfig, model_abbr
from proctor.core import Item, Record, Request, path_part
from proctor.engine.cache import ResponseCache, open_cache
from proctor.engine.gcquiet import quiet_gc
from proctor.engine.manifest import Manifest, model_info, read_manifest, requests_digest
from proctor.engine.plan import DEFAULT_MAX_WORKERS, Task, make_plan
from proctor.engine.prepare import PreparedDataset
from proctor.engine.progress import RunProgress
from proctor.engine.rundir import RunDir
from proctor.engine.store import PredictionStore
from proctor.engine.task import TaskStats, run_task
from proctor.errors import ConfigError
from proctor.models.base import Backend

log = logging.getLogger("proctor.engine")


def num_gpus_of(config: Any) -> int:
    """GPUs a model asks for (API models: none)."""
    return 0 if isinstance(config, ApiModelConfig) else int(getattr(config, "num_gpus", 0) or 0)


class ModelEntry:
    """A model of the run as a runner built it: its config and its (not yet started) backend.

    `eager`: start before planning (API models: quick, and their name may be discovered at start);
    otherwise started by the model's first task and closed after its last, so local models
    hold memory and GPUs only while they work.
    """

    def __init__(self, config: Any, backend: Backend, *, eager: bool, name: str) -> None:
        self.config = config
        self.backend = backend
        self.eager = eager
        self.name = name
        self.started = False
        self.remaining = 0  # tasks of this model not finished yet
        self._lock = asyncio.Lock()
        self._closed = False
        self._refused: Exception | None = None

    async def ready(self, on_start: Callable[[ModelEntry], None]) -> Backend:
        """The started backend (started here by the first task that asks)."""
        async with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} was already closed")
            if self._refused is not None:
                raise self._refused
            if not self.started:
                await self.backend.start()
                self.started = True
                try:
                    on_start(self)
                except Exception as exc:  # e.g. -r with another model: no task may use it
                    self._refused = exc
                    raise
        return self.backend

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self.backend.close()
            except Exception as exc:  # closing must not hide the run's own error
                log.debug("closing %s failed: %s", self.name, exc)


@dataclass
class InferenceOutcome:
    names: list[str]
    plan: list[Task]
    stats: dict[Task, TaskStats] = field(default_factory=dict)


async def start_eager(entries: Sequence[ModelEntry]) -> None:
    """Start the eager models at once; on the first failure close them all and raise it."""
    results = await asyncio.gather(*(e.backend.start() for e in entries if e.eager), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for entry in entries:
        if entry.eager:
            entry.started = True
            entry.name = entry.backend.name  # an API model's id may be discovered by start()
    if errors:
        await asyncio.gather(*(e.close() for e in entries))
        raise errors[0]


def _warn_if_measure_changed(previous: dict[str, Any], now: dict[str, Any], datasets: list[str]) -> None:
    """`-r` on a run whose data, prompts or scorers changed since it started: its old records
    were made under other conditions (records whose prompt changed are sent again anyway)."""
    if not previous:
        return
    from proctor.report.manifests import diff_manifests, measured_changes

    for change in measured_changes(diff_manifests(previous, now, datasets=datasets)):
        log.warning("-r: %s", change.message)


def check_same_model(name: str, before: str | None, now: str) -> None:
    """`-r` must not mix two models' answers in one result: the model named `name` must be
    the one that made this run's earlier records (same identity), or the run is refused."""
    if before and before != now:
        raise ConfigError(
            f"-r: model {name} is not the model that made this run's records (it was {before}, "
            f"now {now}); start a new run without -r, or give this model another abbr"
        )


def check_unique(names: Sequence[str], what: str) -> None:
    """Refuse two names that are the same, or that become the same file name (`team/m1` and
    `team_m1` both write `team_m1`): they would share one predictions file and one score."""
    from proctor.core import path_part

    seen: dict[str, str] = {}
    for name in names:
        part = path_part(name)
        if part in seen:
            if seen[part] == name:
                raise ConfigError(f"two {what}s are named {name!r}; give one a different abbr")
            raise ConfigError(
                f"{what}s {seen[part]!r} and {name!r} would write the same files ({part}); give one a different abbr"
            )
        seen[part] = name


class _Requests:
    """Each dataset's requests rendered once per (chat, max_tokens, temperature, max_seq_len)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed  # the run's: repeat j of a question is sent with seed + j
        self._memo: dict[tuple[Any, ...], list[tuple[Item, Request]]] = {}
        self._settings: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._estimated: set[str] = set()
        self._budgeted: set[str] = set()
        self._fitted: set[tuple[str, str]] = set()

    def of(
        self, dataset: PreparedDataset, chat: bool, config: Any, backend: Any = None
    ) -> list[tuple[Item, Request]]:
        max_seq_len = getattr(config, "max_seq_len", None)
        explicit = "max_out_len" in config.model_fields_set
        max_tokens = config.max_out_len
        if getattr(config, "reasoning", False) and not explicit:
            # A benchmark's answer length (256, 512) is spent before most thoughts end.
            max_tokens, explicit = REASONING_MAX_OUT_LEN, True
            local = not isinstance(config, ApiModelConfig)
            if local and max_seq_len and max_seq_len // 2 < max_tokens:
                # A local model's context holds prompt and answer: half of it is the answer's.
                max_tokens = max(config.max_out_len, max_seq_len // 2)
            if model_abbr(config) not in self._budgeted:
                self._budgeted.add(model_abbr(config))
                room = (f" (half of its max_seq_len {max_seq_len}: raise --max-seq-len for more)"
                        if max_tokens < REASONING_MAX_OUT_LEN else "")
                log.warning("%s is a reasoning model: answers get up to %d tokens%s (set max_out_len / "
                            "--max-out-len for another budget)", model_abbr(config), max_tokens, room)
        # A local model counts prompt tokens with its own tokenizer and chat template; others are
        # estimated (an upper bound for most tokenizers), and the user is told once.
        count = getattr(backend, "count_tokens", None) if max_seq_len else None
        if max_seq_len and count is None and model_abbr(config) not in self._estimated:
            self._estimated.add(model_abbr(config))
            log.warning("--max-seq-len for %s is checked with an estimate of the prompt's tokens (3 characters "
                        "or 1 CJK character per token, about 25%% to spare for English): its server's tokenizer "
                        "is not available here", model_abbr(config))
        # Everything the requests are rendered with (the seed is the run's): two models share
        # them only when they would render them alike.
        system = getattr(config, "system_prompt", None)
        key = (dataset.config.abbr, chat, max_tokens, config.temperature, max_seq_len, explicit, system,
               backend.identity if count is not None else None)
        if key not in self._memo:
            if dataset.task.repeats > 1 and config.temperature == 0:
                raise ConfigError(
                    f"dataset {dataset.config.abbr} asks each question {dataset.task.repeats} times (repeats), "
                    "which would all be the same answer at temperature 0; set --temperature (e.g. 0.6)"
                )
            settings: dict[str, Any] = dict(
                chat=chat, max_tokens=max_tokens, temperature=config.temperature, max_seq_len=max_seq_len,
                max_tokens_set=explicit, count=count, seed=self.seed,
                local=count is not None and config.type != "api", system=system,
            )
            self._settings[key] = settings
            # A conversation's later turns wait for the answers before them (engine/conversation.py).
            first = [i for i in dataset.items if i.variant.get("turn", 1) == 1]
            self._memo[key] = [(item, dataset.request(item, **settings)) for item in first]
            asked = dataset.answer_budget(chat, max_tokens, explicit)
            said = (model_abbr(config), dataset.config.benchmark)
            if said not in self._fitted:  # once per model and benchmark, not per subject
                if _say_what_was_fitted(model_abbr(config), dataset.config.abbr, max_seq_len, asked, self._memo[key]):
                    self._fitted.add(said)
        self._last = key
        return self._memo[key]

    def settings(self, dataset: PreparedDataset, chat: bool, config: Any, backend: Any = None) -> dict[str, Any]:
        """The keyword settings `of` renders this model's requests of `dataset` with."""
        self.of(dataset, chat, config, backend)
        return self._settings[self._last]


def _say_what_was_fitted(
    model: str, abbr: str, max_seq_len: int | None, asked: int, requests: Sequence[tuple[Item, Request]]
) -> bool:
    """A warning (True) when answers get less room than asked, examples were dropped, or prompts
    do not fit at all (those are failed records, never cut); results count the dropped examples."""
    if max_seq_len is None or not requests:
        return False
    shrunk = [r.max_tokens for _, r in requests if r.kind == "generate" and r.max_tokens < asked and r.refusal is None]
    dropped = [r.fewshot_dropped for _, r in requests if r.fewshot_dropped]
    refused = [r for _, r in requests if r.refusal is not None]
    parts = []
    if shrunk:
        span = f"{min(shrunk)}" if min(shrunk) == max(shrunk) else f"{min(shrunk)} to {max(shrunk)}"
        parts.append(f"{len(shrunk)} of {len(requests)} answers may use only {span} tokens instead of {asked} "
                     f"(what the prompt leaves of max_seq_len {max_seq_len})")
    if dropped:
        parts.append(f"{len(dropped)} prompts dropped {sum(dropped)} few-shot examples to fit")
    if refused:
        parts.append(f"{len(refused)} prompts do not fit at all and are recorded as failed ({refused[0].refusal})")
    if parts:
        log.warning("%s on %s: %s (other subjects of this benchmark are not reported again)",
                    model, abbr, "; ".join(parts))
    return bool(parts)


async def run_inference(
    config: RunConfig,
    run: RunDir,
    prepared: Sequence[PreparedDataset],
    entries: Sequence[ModelEntry],
    *,
    argv: Sequence[str] | None,
    console: Any,
    runner: str,
    select: Callable[[Task], bool] | None = None,
    known: Mapping[tuple[str, str], Mapping[str, Record]] | None = None,
) -> InferenceOutcome:
    """Run every (model, dataset shard) task; return the model names and the plan.

    `select` keeps only some tasks of the plan, and `known` adds records held elsewhere (by
    (model, dataset)) to what counts as done: a Slurm job runs one shard into its own folder.
    """
    try:
        await start_eager(entries)
        names = [e.name for e in entries]
        check_unique(names, "model")
        plan = make_plan(
            names,
            [(p.config.abbr, p.plan_size) for p in prepared],
            config.max_partition_size,
            {e.name: num_gpus_of(e.config) for e in entries},
        )
        if select is not None:
            plan = [t for t in plan if select(t)]
        previous = read_manifest(run)  # before Manifest() merges the old datasets in
        manifest = Manifest(run, datasets=prepared, seed=config.seed, argv=argv, runner=runner)
        _warn_if_measure_changed(previous, manifest.data, [p.config.abbr for p in prepared])
        rendered = _Requests(config.seed)
        by_abbr = {p.config.abbr: p for p in prepared}

        def on_start(entry: ModelEntry) -> None:
            attach = getattr(entry.backend, "attach_run", None)
            if attach is not None:  # the Batch API keeps its files and batch ids in the run folder
                attach(run.root / "batches" / path_part(entry.name))
            info = model_info(entry.config, identity=entry.backend.identity, chat=entry.backend.chat)
            devices = getattr(entry.backend, "devices", None)
            if devices:
                info["devices"] = devices
            check_same_model(entry.name, manifest.previous_models.get(entry.name, {}).get("identity"),
                             info["identity"])
            manifest.add_model(entry.name, info)
            for dataset in prepared:
                items = rendered.of(dataset, entry.backend.chat, entry.config, entry.backend)
                manifest.add_requests(entry.name, dataset.config.abbr, requests_digest(r for _, r in items))
            manifest.write()

        for entry in entries:
            entry.remaining = sum(1 for t in plan if t.model == entry.name)
            if entry.started:
                on_start(entry)
        manifest.write()
        outcome = InferenceOutcome(names=names, plan=plan)
        with quiet_gc():
            await _run_plan(config, run, plan, entries, by_abbr, rendered, on_start, outcome, console, known or {})
        return outcome
    finally:
        await asyncio.gather(*(e.close() for e in entries))


async def _run_plan(
    config: RunConfig,
    run: RunDir,
    plan: list[Task],
    entries: Sequence[ModelEntry],
    by_abbr: dict[str, PreparedDataset],
    rendered: _Requests,
    on_start: Callable[[ModelEntry], None],
    outcome: InferenceOutcome,
    console: Any,
    known: Mapping[tuple[str, str], Mapping[str, Record]],
) -> None:
    cache = open_cache() if config.cache else None
    stores: dict[tuple[str, str], PredictionStore] = {}
    existing: dict[tuple[str, str], dict[str, Record]] = {}
    for task in plan:
        key = (task.model, task.dataset)
        if key not in stores:
            # Shards of one dataset share its store: one writer per file, records in arrival order.
            stores[key] = PredictionStore(run.predictions(*key))
            existing[key] = {**known.get(key, {}), **stores[key].load()}
    progress = RunProgress(plan, debug=config.debug, console=console)
    gate = asyncio.Semaphore(1 if config.debug else (config.max_num_workers or DEFAULT_MAX_WORKERS))
    entry_of = {e.name: e for e in entries}

    def gate_of(entry: ModelEntry) -> asyncio.Semaphore | contextlib.nullcontext[None]:
        # A local model answers all its tasks from one queue (batched across subjects, longest
        # first): unless --max-num-workers caps them, all its tasks are in it at once, so that
        # 57 subjects of 5 questions batch like one subject of 285.
        # A Batch API model takes all its tasks at once, always: their requests go in one batch,
        # and a task waiting hours for it must not hold a slot another task's requests need.
        batch = getattr(entry.config, "batch", False) and not config.debug
        if not batch and (config.debug or config.max_num_workers or isinstance(entry.config, ApiModelConfig)):
            return gate
        return contextlib.nullcontext()

    async def work(task: Task, entry: ModelEntry, backend: Backend) -> None:
        key = (task.model, task.dataset)
        dataset = by_abbr[task.dataset]
        progress.start(task)
        if dataset.conversation:
            from proctor.engine.conversation import run_conversations

            stats = await run_conversations(
                backend, dataset, dataset.shard_items(task.start, task.end),
                rendered.settings(dataset, backend.chat, entry.config, backend), stores[key], existing[key], cache,
                lambda record: progress.advance(task, record), run_id=run.run_id, markers=_markers(entry.config),
                model=task.model,
            )
        else:
            items = rendered.of(dataset, backend.chat, entry.config, backend)[task.start : task.end]
            stats = await run_task(
                backend, items, stores[key], existing[key], cache, lambda record: progress.advance(task, record),
                run_id=run.run_id, markers=_markers(entry.config),
            )
        progress.finish(task, stats)
        outcome.stats[task] = stats
        _log_task(run, task, stats)

    async def one(task: Task) -> None:
        entry = entry_of[task.model]
        try:
            if config.debug:
                # Strictly one thing at a time: a model loads only when its first task's turn comes
                # (after the previous model closed), so only one is ever in memory.
                async with gate:
                    await work(task, entry, await entry.ready(on_start))
            else:
                # The model is ready before its task takes a slot: a model waiting for GPUs must not
                # hold slots that the tasks of the model holding them need to finish.
                backend = await entry.ready(on_start)
                async with gate_of(entry):
                    await work(task, entry, backend)
        finally:
            entry.remaining -= 1
            if entry.remaining == 0:
                await entry.close()

    try:
        with progress:
            await _gather_or_cancel([one(t) for t in plan])
    finally:
        for store in stores.values():
            store.close()
        if cache is not None:
            cache.close()


async def _gather_or_cancel(coroutines: list[Any]) -> None:
    """Run all; on the first fatal error cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _markers(config: Any) -> Any:
    """The model's reasoning markers (None: the default tags), for splitting its outputs."""
    markers = getattr(config, "reasoning_markers", None)
    return markers() if markers is not None else None


def _log_task(run: RunDir, task: Task, stats: TaskStats) -> None:
    path = run.log(task.model, task.dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(
            f"{task.label}: sent {stats.sent}, cached {stats.cached}, already done {stats.skipped}, "
            f"failed {stats.failed}, {stats.seconds:.2f}s\n"
        )
