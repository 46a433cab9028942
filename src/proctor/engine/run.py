"""One run: prepare datasets, then the stages `--mode` asks for (infer, eval, report)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from proctor.config.secrets import redact_argv
from proctor.config.schema import ApiModelConfig, RunConfig, model_abbr
from proctor.core import Result
from proctor.engine.diskio import as_write_error
from proctor.engine.evaluate import count_unfinished, evaluate_run, load_results, write_reports
from proctor.engine.infer import InferenceOutcome, check_unique, num_gpus_of
from proctor.config.secrets import public_url
from proctor.engine.manifest import read_manifest, read_model_names
from proctor.engine.plan import Task, make_plan
from proctor.engine.prepare import PreparedDataset, prepare_dataset
from proctor.engine.runners import get_runner
from proctor.engine.rundir import RunDir, find_run_dir, locked, new_run_dir, write_config
from proctor.engine.store import PredictionStore
from proctor.engine.task import TaskStats, count_unanswered
from proctor.errors import ConfigError, ProctorError, RunInterrupted

log = logging.getLogger("proctor.engine")


@dataclass
class RunOutcome:
    run: RunDir
    results: list[Result] = field(default_factory=list)
    failed: int = 0  # samples without a successful record
    plan: list[Task] = field(default_factory=list)
    to_do: dict[Task, int] = field(default_factory=dict)  # --dry-run: samples each task would send
    stats: dict[Task, TaskStats] = field(default_factory=dict)
    summary: Any = None
    devices: dict[str, str] = field(default_factory=dict)  # --dry-run: where each local model runs
    notes: list[str] = field(default_factory=list)  # --dry-run: more lines (the Batch API's files and cost)


def execute(config: RunConfig, *, argv: Sequence[str] | None = None, console: Any = None) -> RunOutcome:
    """Run `config` to the end and return what it produced; raises ProctorError on user mistakes."""
    return asyncio.run(_execute(config, argv=argv, console=console))


async def _execute(config: RunConfig, *, argv: Sequence[str] | None, console: Any) -> RunOutcome:
    check_unique([d.abbr for d in config.datasets], "dataset")
    # Names known before any model starts (an API model's id may only be read from its server).
    check_unique([model_abbr(m) for m in config.models if not _discovered_name(m)], "model")
    _check_models(config)
    if not config.debug and not config.dry_run and config.mode in ("all", "infer"):
        get_runner(config.runner).check(config)  # a missing extra fails before a run folder is made
    fresh = not config.reuse and config.mode in ("all", "infer") and not config.dry_run
    # A wrong -r names its mistake first; a new folder is made only once the data is found,
    # so a data mistake leaves none behind for `-r latest`.
    found = None if fresh else _run_dir(config)
    if found is not None:
        _check_same_datasets(config, found)
    prepared = [prepare_dataset(d, config.data_dir) for d in config.datasets]
    _check_judge(config, prepared)
    _check_extras(config, prepared)
    run = found or _run_dir(config)
    try:
        if config.dry_run:
            return await _stages(config, run, prepared, argv=redact_argv(argv), console=console)
        with locked(run):
            return await _stages(config, run, prepared, argv=redact_argv(argv), console=console)
    except asyncio.CancelledError:
        # Ctrl-C: asyncio.run cancels this task; name the run so the user can resume exactly it.
        if run.config_path.is_file():
            raise RunInterrupted(run.run_id, str(config.work_dir)) from None
        raise
    except ProctorError:
        if fresh:
            _discard_if_unused(run)
        raise
    except OSError as exc:
        if fresh:
            _discard_if_unused(run)
        error = as_write_error(exc, run.root)  # disk full in a writer outside the engine (summary, report)
        if error is None:
            raise
        raise error from None
    except Exception:
        if fresh:
            _discard_if_unused(run)  # an unforeseen failure leaves no empty run for `-r latest` either
        raise


async def _stages(
    config: RunConfig, run: RunDir, prepared: list[PreparedDataset], *, argv: list[str] | None, console: Any
) -> RunOutcome:
    outcome = RunOutcome(run=run)
    if config.dry_run:
        _dry_run(config, run, prepared, outcome)
        return outcome
    if config.mode in ("all", "infer"):
        write_config(run, config, argv)
        inference = await _infer(config, run, prepared, argv=argv, console=console)
        model_names = inference.names
        outcome.plan, outcome.stats = inference.plan, inference.stats
    else:
        # eval / report: from what is on disk; config.json stays the one inference wrote.
        model_names = read_model_names(run) or [model_abbr(m) for m in config.models]
    if config.mode == "infer":
        outcome.failed = count_unfinished(run, model_names, prepared)
        return outcome
    if config.mode == "report":
        outcome.results = load_results(run, model_names, prepared)
        if not outcome.results:
            raise ConfigError(f"--mode report: {run.root} has no results yet; run `--mode eval -r {run.run_id}` first")
        expected = len(model_names) * len(prepared)
        if len(outcome.results) < expected:
            log.warning(
                "--mode report: %d of %d results are missing in %s (shown as -); `--mode eval -r %s` makes them",
                expected - len(outcome.results), expected, run.root, run.run_id,
            )
    else:
        outcome.results = await evaluate_run(run, model_names, prepared, judge=config.judge, cache=config.cache)
    outcome.failed = sum(r.n_failed for r in outcome.results)
    outcome.summary = write_reports(run, model_names, prepared, outcome.results, console=console, judge=config.judge)
    return outcome


async def _infer(
    config: RunConfig, run: RunDir, prepared: list[PreparedDataset], *, argv: list[str] | None, console: Any
) -> InferenceOutcome:
    runner = config.runner
    if runner != "local" and config.debug:
        log.warning("--debug runs everything in this process, sequentially: --runner %s is ignored", runner)
        runner = "local"
    return await get_runner(runner).run(config, run, prepared, argv=argv, console=console)


def _dry_run(config: RunConfig, run: RunDir, prepared: list[PreparedDataset], outcome: RunOutcome) -> None:
    """The plan, without starting a model; with -r, how many samples each task still has to send.

    API models whose id is read from the server at start go by their configured name here.
    """
    from proctor.engine.gpus import visible_gpus

    names = _dry_run_names(config, run)
    gpus = {name: num_gpus_of(m) for name, m in zip(names, config.models)}
    visible = None
    for name, model in zip(names, config.models):
        if isinstance(model, ApiModelConfig):
            continue
        device = getattr(model, "device", None) or ""
        if visible is None and not device:
            visible = visible_gpus()
        if device.startswith("cpu") or gpus[name] == 0:
            gpus[name], outcome.devices[name] = 0, "CPU"
        elif not device and not visible:
            # A machine without GPUs runs the model on its CPU, whatever num_gpus says.
            gpus[name], outcome.devices[name] = 0, "CPU (no GPU visible)"
        else:
            outcome.devices[name] = f"{gpus[name]} GPU{'s' if gpus[name] > 1 else ''}"
    sizes = [(p.config.abbr, p.plan_size) for p in prepared]
    outcome.plan = make_plan(names, sizes, config.max_partition_size, gpus)
    records: dict[tuple[str, str], dict[str, Any]] = {}

    def records_of(model: str, dataset: str) -> dict[str, Any]:
        if (model, dataset) not in records:
            found = PredictionStore(run.predictions(model, dataset)).load(repair=False) if config.reuse else {}
            records[model, dataset] = found
        return records[model, dataset]

    _dry_run_batches(config, names, prepared, records_of, outcome)
    if not config.reuse:
        return
    by_abbr = {p.config.abbr: p for p in prepared}
    for task in outcome.plan:
        items = by_abbr[task.dataset].shard_items(task.start, task.end)
        outcome.to_do[task] = count_unanswered(items, records_of(task.model, task.dataset))


def _dry_run_batches(config: RunConfig, names: list[str], prepared: list[PreparedDataset],
                     records_of: Any, outcome: RunOutcome) -> None:
    """--dry-run of a Batch API model: its requests still to send, batch files and cost."""
    from proctor.engine.infer import _Requests
    from proctor.engine.task import pending_items
    from proctor.models.batch_plan import describe_batches

    rendered = _Requests(config.seed)
    for name, model in zip(names, config.models):
        if not (isinstance(model, ApiModelConfig) and model.batch):
            continue
        requests = [r for p in prepared
                    for _, r in pending_items(rendered.of(p, model.api_type == "chat", model), records_of(name, p.config.abbr))
                    if r.refusal is None]
        outcome.notes.extend(describe_batches(model, name, requests))


def _dry_run_names(config: RunConfig, run: RunDir) -> list[str]:
    """Each model's name; with -r, an API model whose id was read from its server at run time
    goes by the id the manifest recorded, since its predictions are filed under that name."""
    used = read_manifest(run).get("models", {}) if config.reuse else {}
    names = []
    for model in config.models:
        name = model_abbr(model)
        if isinstance(model, ApiModelConfig) and not (model.abbr or model.model):
            same = [
                n for n, info in used.items()
                if info.get("api_base") == public_url(model.api_base) and info.get("api_type") == model.api_type
            ]
            name = same[0] if len(same) == 1 else name
        names.append(name)
    return names


def _check_judge(config: RunConfig, prepared: Sequence[PreparedDataset]) -> None:
    """A dataset scored by a judge needs one: say so before any model runs, not after inference."""
    if config.judge is not None or config.mode in ("report", "infer"):  # answering needs no judge
        return
    from proctor.scoring import get_scorer, judge_scorer

    for dataset in prepared:
        scorer = get_scorer(dataset.task.scorer, dataset.task.scorer_params)
        if judge_scorer(scorer):
            suggested = getattr(scorer, "suggested_judge", "")
            raise ConfigError(
                f"dataset {dataset.config.abbr} is scored by a judge ({dataset.task.scorer}) but no judge model "
                "is set: add `judge:` to the config or pass --judge-api-base URL (or --judge-model PRESET)"
                + (f"; the benchmark's own judge is {suggested}" if suggested else "")
            )


def _check_extras(config: RunConfig, prepared: Sequence[PreparedDataset]) -> None:
    """A dataset whose scorer needs an optional package (MATH-500: Math-Verify) says so before
    any model runs; datasets that need none run on a core install."""
    if config.mode in ("infer", "report"):
        return
    from proctor.scoring import get_scorer

    for dataset in prepared:
        scorer = get_scorer(dataset.task.scorer, dataset.task.scorer_params)
        missing = getattr(scorer, "missing_extra", lambda: None)()
        if missing:
            raise ConfigError(f"dataset {dataset.config.abbr}: {missing}")


# A run's files are named after its models and datasets (see rundir); a file name holds 255 bytes.
# Dataset settings whose change makes other datasets (other samples, another task): resuming a
# run with them changed would mix two evaluations in one folder. A changed prompt (fewshot) or
# scorer is fine: records made with another prompt are sent again, scores are made again.
_RESUME_FREE = ("fewshot", "max_out_len", "scorer", "scorer_params", "judge", "data_dir")


def _check_models(config: RunConfig) -> None:
    """Mistakes in the models that would otherwise surface after a run folder is made."""
    from proctor.config.schema import HFModelConfig

    if config.runner != "local" and not config.debug and any(getattr(m, "batch", False) for m in config.models):
        raise ConfigError(f"--api-batch runs in this process (it waits on the provider, not on workers); "
                          f"leave out --runner {config.runner}")
    if config.debug and any(getattr(m, "batch", False) for m in config.models):
        log.warning("--debug runs one task at a time: each dataset goes in a batch of its own, waited for in "
                    "turn; without --debug all of a model's requests go in one batch")
    if getattr(config.judge, "batch", False):
        raise ConfigError("judge: batch: true is not supported (the judge is asked online); remove it from the judge")
    for model in [*config.models, *([config.judge] if config.judge is not None else [])]:
        if not (isinstance(model, HFModelConfig) and (model.device or "").startswith("cuda")):
            continue
        if config.dry_run or config.mode == "report":
            continue
        try:
            import torch
        except ImportError:
            continue  # the backend names the missing extra
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {model.device} (model {model_abbr(model)}): CUDA is not available on this machine "
                "(torch sees no GPU); use --device cpu or leave the device unset"
            )


def _check_same_datasets(config: RunConfig, run: RunDir) -> None:
    """`-r` / `--mode eval|report` with other datasets than the run's is refused, before anything
    is written: the run's config.json keeps describing the run."""
    from proctor.config.schema import DatasetConfig
    from proctor.engine.rundir import read_config

    stored = read_config(run).get("datasets")
    if not isinstance(stored, list):
        return
    try:
        before = {d.abbr: d for d in (DatasetConfig(**s) for s in stored)}
    except Exception:  # written by another version: nothing to compare with
        return
    now = {d.abbr: d for d in config.datasets}

    def identity(d: DatasetConfig) -> dict[str, Any]:
        return d.model_dump(mode="json", exclude=set(_RESUME_FREE))

    differences = [f"{a} not in the run" for a in now if a not in before]
    differences += [f"{a} left out" for a in before if a not in now]
    for abbr in (a for a in now if a in before):
        old, new = identity(before[abbr]), identity(now[abbr])
        changed = [f"{k} {new.get(k)!r} (run: {old.get(k)!r})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if changed:
            differences.append(f"{abbr} {', '.join(changed)}")
    if not differences:
        return
    shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
    flag = f"-r {config.reuse}" if config.reuse else f"--mode {config.mode}"
    raise ConfigError(
        f"{flag}: run {run.run_id} was made with other datasets ({shown}); give the run's datasets "
        f"(`proctor run -r {run.run_id}` alone takes them from its config.json) or leave out -r to start a new run"
    )


def _discovered_name(model: Any) -> bool:
    """True for an API model named by its server at start (no abbr, no model id configured)."""
    return isinstance(model, ApiModelConfig) and not (model.abbr or model.model)


def _discard_if_unused(run: RunDir) -> None:
    """Remove a new run folder that holds no prediction (the model could not start, say).

    Left behind, `-r latest` and `--mode eval|report` would pick it instead of the last real run.
    """
    predictions = run.root / "predictions"
    if predictions.is_dir() and any(p.is_file() and p.stat().st_size for p in predictions.rglob("*")):
        return
    shutil.rmtree(run.root, ignore_errors=True)


def _run_dir(config: RunConfig) -> RunDir:
    if config.reuse:
        return find_run_dir(config.work_dir, config.reuse)
    if config.mode in ("eval", "report"):
        return find_run_dir(config.work_dir, "latest", mode=config.mode)
    if config.dry_run:
        return RunDir(Path(config.work_dir) / "dry-run")  # never created
    return new_run_dir(config.work_dir)


