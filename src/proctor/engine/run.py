"""One run: prepare datasets, infer (models x datasets), evaluate, summarise."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from proctor.config.schema import ApiModelConfig, RunConfig, model_abbr
from proctor.core import Record, Result
from proctor.engine.cache import ResponseCache
from proctor.engine.manifest import read_model_names, write_manifest
from proctor.engine.plan import Task, make_plan
from proctor.engine.prepare import PreparedDataset, prepare_dataset
from proctor.engine.progress import RunProgress
from proctor.engine.rundir import RunDir, find_run_dir, new_run_dir, write_config
from proctor.engine.store import PredictionStore
from proctor.engine.task import ModelSettings, run_task
from proctor.errors import ConfigError

log = logging.getLogger("proctor.engine")

DEFAULT_TASK_CONCURRENCY = 32


@dataclass
class RunOutcome:
    run: RunDir
    results: list[Result] = field(default_factory=list)
    failed: int = 0
    plan: list[Task] = field(default_factory=list)
    summary: Any = None


def execute(config: RunConfig, *, argv: Sequence[str] | None = None, console: Any = None) -> RunOutcome:
    """Run `config` to the end and return what it produced; raises ProctorError on user mistakes."""
    return asyncio.run(_execute(config, argv=argv, console=console))


async def _execute(config: RunConfig, *, argv: Sequence[str] | None, console: Any) -> RunOutcome:
    run = _run_dir(config)
    prepared = [prepare_dataset(d, config.data_dir) for d in config.datasets]
    _check_unique([d.abbr for d in config.datasets], "dataset")
    outcome = RunOutcome(run=run)
    if config.dry_run:
        names = [model_abbr(m) for m in config.models]
        outcome.plan = make_plan(names, [(p.config.abbr, len(p.samples)) for p in prepared], config.max_partition_size)
        return outcome
    write_config(run, config, _redacted(argv))
    if config.mode in ("all", "infer"):
        if config.runner == "ray":
            from proctor.engine.ray_runner import infer_on_ray

            model_names = await infer_on_ray(config, run, prepared, argv=_redacted(argv))
        else:
            model_names = await _infer(config, run, prepared, outcome, argv=_redacted(argv), console=console)
    else:
        model_names = read_model_names(run) or [model_abbr(m) for m in config.models]
    if config.mode in ("all", "infer", "eval"):
        outcome.results = evaluate_run(run, model_names, prepared, rescore=config.mode == "eval")
    else:
        outcome.results = load_results(run, model_names, prepared)
    outcome.failed = sum(r.n_failed for r in outcome.results)
    if config.mode != "infer":
        outcome.summary = write_reports(run, model_names, prepared, outcome.results, console=console)
    return outcome


def _run_dir(config: RunConfig) -> RunDir:
    if config.reuse:
        return find_run_dir(config.work_dir, config.reuse)
    if config.mode in ("eval", "report"):
        return find_run_dir(config.work_dir, "latest")
    if config.dry_run:
        from pathlib import Path

        return RunDir(Path(config.work_dir) / "dry-run")
    return new_run_dir(config.work_dir)


def _redacted(argv: Sequence[str] | None) -> list[str] | None:
    if argv is None:
        return None
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("**********")
            hide = False
        elif arg.startswith("--api-key="):
            out.append("--api-key=**********")
        else:
            out.append(arg)
            hide = arg == "--api-key"
    return out


def _check_unique(names: list[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two {what}s are named {name!r}; give one a different abbr")
        seen.add(name)


async def _infer(
    config: RunConfig,
    run: RunDir,
    prepared: list[PreparedDataset],
    outcome: RunOutcome,
    *,
    argv: list[str] | None,
    console: Any,
) -> list[str]:
    from proctor.models import create_backend

    backends = []
    try:
        for model in config.models:
            backend = create_backend(model)
            backends.append(backend)
            await backend.start()
        names = [b.name for b in backends]
        _check_unique(names, "model")
        write_manifest(
            run,
            datasets=prepared,
            models={b.name: _model_info(b, m) for b, m in zip(backends, config.models)},
            seed=config.seed,
            argv=argv,
        )
        by_abbr = {p.config.abbr: p for p in prepared}
        plan = make_plan(names, [(p.config.abbr, len(p.samples)) for p in prepared], config.max_partition_size)
        outcome.plan = plan
        cache = ResponseCache() if config.cache else None
        stores: dict[tuple[str, str], PredictionStore] = {}
        existing: dict[tuple[str, str], dict[str, Record]] = {}
        for task in plan:
            key = (task.model, task.dataset)
            if key not in stores:
                stores[key] = PredictionStore(run.predictions(*key))
                existing[key] = stores[key].load()
        progress = RunProgress(plan, by_abbr, existing, debug=config.debug, console=console)
        limit = 1 if config.debug else (config.max_num_workers or DEFAULT_TASK_CONCURRENCY)
        gate = asyncio.Semaphore(limit)
        settings = {
            b.name: ModelSettings(max_tokens=m.max_out_len, temperature=m.temperature)
            for b, m in zip(backends, config.models)
        }
        backend_by_name = {b.name: b for b in backends}

        async def one(task: Task) -> None:
            async with gate:
                key = (task.model, task.dataset)
                dataset = by_abbr[task.dataset]
                progress.start(task)
                stats = await run_task(
                    backend_by_name[task.model],
                    settings[task.model],
                    dataset,
                    list(dataset.samples[task.start : task.end]),
                    stores[key],
                    existing[key],
                    cache,
                    lambda record: progress.advance(task, record),
                )
                progress.finish(task, stats)
                _log_task(run, task, stats)

        try:
            with progress:
                await _gather_or_cancel([one(t) for t in plan])
        finally:
            for store in stores.values():
                store.close()
            if cache is not None:
                cache.close()
        return names
    finally:
        for backend in backends:
            try:
                await backend.close()
            except Exception as exc:  # closing must not hide the run's own error
                log.debug("closing %s failed: %s", getattr(backend, "name", "?"), exc)


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


def _model_info(backend: Any, config: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"type": config.type, "identity": backend.identity, "chat": backend.chat}
    if isinstance(config, ApiModelConfig):
        info["api_base"] = config.api_base
    return info


def _log_task(run: RunDir, task: Task, stats: Any) -> None:
    path = run.log(task.model, task.dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(
            f"{task.label}: sent {stats.sent}, cached {stats.cached}, already done {stats.skipped}, "
            f"failed {stats.failed}, {stats.seconds:.2f}s\n"
        )


def evaluate_run(
    run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset], *, rescore: bool = False
) -> list[Result]:
    """Score every (model, dataset) from the records on disk and write results/*.json."""
    from proctor.engine.scoring import rescore as rescore_record
    from proctor.metrics import accuracy_result

    results = []
    for model in model_names:
        for dataset in prepared:
            records = PredictionStore(run.predictions(model, dataset.config.abbr)).load()
            kind = "loglikelihood" if dataset.config.mode == "ppl" else "generate"
            selected = []
            for sample in dataset.samples:
                record = records.get(sample.id)
                if record is None:
                    continue
                selected.append(rescore_record(record, kind) if rescore else record)
            missing = len(dataset.samples) - len(selected)
            result = accuracy_result(selected, model, dataset.config.abbr)
            if missing:
                from dataclasses import replace

                # A sample with no record at all (interrupted run) counts as not answered.
                result = replace(result, n_failed=result.n_failed + missing)
            path = run.result(model, dataset.config.abbr)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            results.append(result)
    return results


def load_results(run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset]) -> list[Result]:
    results = []
    for model in model_names:
        for dataset in prepared:
            path = run.result(model, dataset.config.abbr)
            if path.is_file():
                results.append(Result.from_json(json.loads(path.read_text(encoding="utf-8"))))
    return results


def write_reports(
    run: RunDir,
    model_names: Sequence[str],
    prepared: Sequence[PreparedDataset],
    results: Sequence[Result],
    *,
    console: Any,
) -> Any:
    from proctor.config.groups import summary_groups
    from proctor.report import DatasetRowInfo, build_summary, print_summary, write_html_report, write_summary

    rows = [DatasetRowInfo(p.config.abbr, p.version, p.config.mode) for p in prepared]
    groups = summary_groups([p.config for p in prepared])
    summary = build_summary(results, rows, groups, list(model_names))
    write_summary(summary, run.summary_dir)
    print_summary(summary, console=console)
    write_html_report(run.root)
    return summary
