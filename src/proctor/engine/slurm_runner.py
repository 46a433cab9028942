"""The Slurm runner (`--runner slurm`): one job per (model, dataset shard), as one job array per model.

Each job runs its task with the local runner (`proctor.engine.slurm_job`) on the node Slurm
gives it, into its own folder under the run's `slurm/`; this process waits, merges each
finished job's records, manifest entry and log into the run folder (it stays their only
writer, so the layout, resume and scoring are the local runner's), and submits a job that
failed or left the queue unfinished (preempted, cancelled, timed out) again, up to
`slurm_retry` times. The jobs' ids are kept in `slurm/jobs.json` and the jobs carry a name
made from the run: `-r` after this process died finds them in the queue and waits for them,
and merges what they wrote meanwhile, instead of submitting them twice. Needs a filesystem
that the submitting machine and the nodes share (the run folder, the Python environment).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shlex
import sys
from dataclasses import asdict
from typing import Any, Sequence

from proctor.config.schema import ApiModelConfig, RunConfig, model_abbr
from proctor.engine import slurmctl
from proctor.engine.diskio import write_json_atomic
from proctor.engine.infer import InferenceOutcome, check_unique, num_gpus_of
from proctor.engine.manifest import Manifest, read_manifest
from proctor.engine.plan import Task, make_plan
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir
from proctor.engine.slurm_job import CONFIG_ENV, JobTask, encode_config, job_folder, read_tasks, slurm_dir
from proctor.engine.store import PredictionStore, record_line
from proctor.engine.task import TaskStats, count_unanswered
from proctor.errors import ConfigError

log = logging.getLogger("proctor.engine")

POLL_MIN_S, POLL_MAX_S = 0.5, 10.0  # squeue is asked at growing intervals, reset by each submission
GONE_POLLS = 2  # a job missing from the queue this many times in a row, without a result, has died
MERGED = "merged"  # marker file: the job folder's records are in the run's files


def preflight(config: RunConfig) -> None:
    slurmctl.check_commands()


def job_name(run: RunDir) -> str:
    """The name the run's jobs carry: found again in the queue by `-r`, unlike any other run's."""
    digest = hashlib.sha256(str(run.root.resolve()).encode()).hexdigest()[:8]
    return f"proctor-{run.run_id}-{digest}"


def model_options(config: RunConfig, model: Any) -> tuple[str, ...]:
    """sbatch options for the jobs of `model`: GPUs only for a local model that wants them."""
    options = []
    if config.slurm_partition:
        options.append(f"--partition={config.slurm_partition}")
    device = getattr(model, "device", None) or ""
    wants_gpus = num_gpus_of(model) > 0 and not device.startswith("cpu")
    if wants_gpus:
        options.append(f"--gres={config.slurm_gres or f'gpu:{num_gpus_of(model)}'}")
    if config.slurm_time:
        options.append(f"--time={config.slurm_time}")
    try:
        options += shlex.split(config.slurm_args or "")
    except ValueError as exc:
        raise ConfigError(f"--slurm-args {config.slurm_args!r}: {exc}") from None
    return tuple(options)


class JobBook:
    """`slurm/tasks.json` (tasks by array index, only ever appended, so a queued job's index keeps
    naming its task) and `slurm/jobs.json` (each task's job ids, the last one current)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.tasks = read_tasks(run)
        path = slurm_dir(run) / "jobs.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        self.jobs: dict[int, list[str]] = {int(k): list(v) for k, v in (data.get("jobs") or {}).items()}

    def index(self, task: JobTask) -> int:
        if task not in self.tasks:
            self.tasks.append(task)
            write_json_atomic(slurm_dir(self.run) / "tasks.json", [asdict(t) for t in self.tasks])
        return self.tasks.index(task)

    def add(self, index: int, job_id: str) -> None:
        if job_id not in self.jobs.setdefault(index, []):
            self.jobs[index].append(job_id)

    def write(self, name: str) -> None:
        write_json_atomic(slurm_dir(self.run) / "jobs.json",
                          {"name": name, "jobs": {str(k): v for k, v in sorted(self.jobs.items())}})


class _Merger:
    """Moves a finished job's folder into the run's files (idempotent: a record the run already
    has as its last is not appended again, so a crash mid-merge costs nothing)."""

    def __init__(self, run: RunDir, manifest: Manifest) -> None:
        self.run = run
        self.manifest = manifest

    def merge(self, task: JobTask, folder: RunDir) -> dict[str, Any] | None:
        """The job's result.json (None: it wrote none), after merging what it wrote."""
        result_path = folder.root / "result.json"
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
        if not folder.root.is_dir() or (folder.root / MERGED).is_file():
            return result
        source = PredictionStore(folder.predictions(task.model, task.dataset)).load(repair=False)
        target = PredictionStore(self.run.predictions(task.model, task.dataset))
        have = target.load(repair=False)
        try:
            for item_id, record in source.items():
                if item_id not in have or record_line(have[item_id]) != record_line(record):
                    target.append(record)
        finally:
            target.close()
        info = read_manifest(folder)
        model = (info.get("models") or {}).get(task.model)
        if model is not None:
            self.manifest.add_model(task.model, model)
        digest = ((info.get("requests_sha256") or {}).get(task.model) or {}).get(task.dataset)
        if digest is not None:
            self.manifest.add_requests(task.model, task.dataset, digest)
        self.manifest.write()
        job_log = folder.log(task.model, task.dataset)
        if job_log.is_file():
            main_log = self.run.log(task.model, task.dataset)
            main_log.parent.mkdir(parents=True, exist_ok=True)
            with main_log.open("a", encoding="utf-8") as f:
                f.write(job_log.read_text(encoding="utf-8"))
        (folder.root / MERGED).write_text("", encoding="utf-8")
        return result


async def _model_names(config: RunConfig) -> list[str]:
    """Each model's name; an API model named by its server is asked here (jobs must agree)."""
    from proctor.models import create_backend

    names = []
    for model in config.models:
        if isinstance(model, ApiModelConfig) and not (model.abbr or model.model):
            backend = create_backend(model)
            try:
                await backend.start()
                names.append(backend.name)
            finally:
                await backend.close()
        else:
            names.append(model_abbr(model))
    return names


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text, markup=False, highlight=False)
    else:
        log.warning("%s", text)


class _Slurm:
    """One invocation's jobs: submit, watch, merge, resubmit."""

    def __init__(self, config: RunConfig, run: RunDir, book: JobBook, merger: _Merger, console: Any) -> None:
        self.config, self.run, self.book, self.merger, self.console = config, run, book, merger, console
        self.name = job_name(run)
        self.encoded = encode_config(config)
        self.active: dict[int, str] = {}  # task index -> its current job
        self.absent: dict[int, int] = {}
        self.tries: dict[int, int] = {}  # resubmissions in this invocation
        self.results: dict[int, dict[str, Any]] = {}
        self.given_up: dict[int, str] = {}

    def log_of(self, job_id: str) -> str:
        return str(slurm_dir(self.run) / "logs" / f"{job_id}.out")

    def submit(self, indices: Sequence[int]) -> None:
        by_model: dict[int, list[int]] = {}
        for index in indices:
            by_model.setdefault(self.book.tasks[index].model_index, []).append(index)
        command = (f"exec {shlex.quote(sys.executable)} -m proctor.engine.slurm_job "
                   f"{shlex.quote(str(self.run.root.resolve()))}")
        (slurm_dir(self.run) / "logs").mkdir(parents=True, exist_ok=True)
        for model_index, group in by_model.items():
            submission = slurmctl.Submission(
                name=self.name, indices=tuple(group), command=command,
                output=str((slurm_dir(self.run) / "logs").resolve() / "%A_%a.out"),
                options=model_options(self.config, self.config.models[model_index]),
            )
            job_ids = slurmctl.sbatch(submission, slurmctl.job_env({CONFIG_ENV: self.encoded}))
            for index, job_id in zip(group, job_ids):
                self.book.add(index, job_id)
                self.active[index] = job_id
                self.absent[index] = 0
            self.book.write(self.name)
            model = self.book.tasks[group[0]].model
            _say(self.console, f"slurm: submitted job array {job_ids[0].split('_')[0]} for {model} "
                               f"({len(group)} task{'s' if len(group) > 1 else ''}): {self.name}")

    def adopt(self, queue: dict[str, str], indices: Sequence[int]) -> None:
        """Jobs of this run still queued (by the book or by their name): waited for, not submitted again."""
        for job_id in queue:
            array_id, _, index = job_id.partition("_")
            if index.isdigit() and int(index) < len(self.book.tasks):
                self.book.add(int(index), job_id)
        for index in indices:
            current = [j for j in self.book.jobs.get(index, []) if j in queue]
            if current:
                self.active[index], self.absent[index] = current[-1], 0
        if self.active:
            self.book.write(self.name)
            _say(self.console, f"slurm: {len(self.active)} jobs of this run are still queued; waiting for them")

    def merge_finished(self, index: int, queue: dict[str, str]) -> None:
        """Merge the job folders of task `index` whose jobs are no longer queued (a crash left them)."""
        out = slurm_dir(self.run) / "out" / str(index)
        if out.is_dir():
            for folder in sorted(p for p in out.iterdir() if p.is_dir()):
                if folder.name not in queue:
                    self.merger.merge(self.book.tasks[index], RunDir(folder))

    def settle(self, index: int) -> int | None:
        """A job that left the queue: merged; the index to submit again, if any."""
        job_id = self.active.pop(index)
        task = self.book.tasks[index]
        result = self.merger.merge(task, job_folder(self.run, index, job_id))
        if result is not None and result.get("ok"):
            self.results[index] = result
            stats = result.get("stats") or {}
            _say(self.console, f"slurm: job {job_id} ({task.label}) done: sent {stats.get('sent', 0)}, "
                               f"cached {stats.get('cached', 0)}, failed {stats.get('failed', 0)}")
            return None
        if result is not None and result.get("user_error"):
            slurmctl.cancel(list(self.active.values()))
            raise ConfigError(f"slurm job {job_id} ({task.label}): {result.get('error')}")
        reason = (result or {}).get("error") or "it left the queue unfinished (failed, preempted, cancelled or timed out)"
        self.tries[index] = self.tries.get(index, 0) + 1
        if self.tries[index] <= self.config.slurm_retry:
            log.warning("slurm job %s (%s) failed: %s (log: %s); submitting it again (retry %d of %d)",
                        job_id, task.label, reason, self.log_of(job_id), self.tries[index], self.config.slurm_retry)
            return index
        self.given_up[index] = reason
        log.warning("slurm job %s (%s) failed: %s (log: %s); no retries left: its samples stay unanswered",
                    job_id, task.label, reason, self.log_of(job_id))
        return None

    async def wait(self) -> None:
        interval = POLL_MIN_S
        try:
            while self.active:
                await asyncio.sleep(interval)
                interval = min(interval * 1.25, POLL_MAX_S)
                queue = slurmctl.queued(self.name)
                if queue is None:
                    continue
                again = []
                for index, job_id in list(self.active.items()):
                    if job_id in queue:
                        self.absent[index] = 0
                        continue
                    self.absent[index] = self.absent.get(index, 0) + 1
                    finished = (job_folder(self.run, index, job_id).root / "result.json").is_file()
                    if finished or self.absent[index] >= GONE_POLLS:
                        resubmit = self.settle(index)
                        if resubmit is not None:
                            again.append(resubmit)
                if again:
                    self.submit(again)
                    interval = POLL_MIN_S
        except asyncio.CancelledError:
            log.warning("the Slurm jobs keep running; `-r %s` waits for them and merges their records "
                        "(`scancel --name=%s` stops them)", self.run.run_id, self.name)
            raise


def _needs_work(
    task: JobTask, dataset: PreparedDataset, records: dict[str, Any], previous: dict[str, Any]
) -> bool:
    """A task is submitted unless each of its items has an answer made with today's prompts."""
    before = (previous.get("datasets") or {}).get(task.dataset) or {}
    if (before.get("prompt_version"), before.get("fewshot")) not in ((None, None), (dataset.version, len(dataset.shots))):
        return True  # the job sends again what another prompt answered, as the local runner does
    return count_unanswered(dataset.shard_items(task.start, task.end), records) > 0


async def infer_on_slurm(
    config: RunConfig,
    run: RunDir,
    prepared: Sequence[PreparedDataset],
    *,
    argv: Sequence[str] | None,
    console: Any = None,
) -> InferenceOutcome:
    """The inference stage as Slurm jobs; returns when every job has finished or given up."""
    names = await _model_names(config)
    check_unique(names, "model")
    sizes = [(p.config.abbr, p.plan_size) for p in prepared]
    gpus = {name: num_gpus_of(m) for name, m in zip(names, config.models)}
    plan = make_plan(names, sizes, config.max_partition_size, gpus)
    previous = read_manifest(run)
    manifest = Manifest(run, datasets=prepared, seed=config.seed, argv=argv, runner="slurm")
    manifest.write()
    book = JobBook(run)
    model_index = {name: i for i, name in enumerate(names)}
    index_of: dict[Task, int] = {
        t: book.index(JobTask(t.model, model_index[t.model], t.dataset, t.start, t.end)) for t in plan
    }
    slurm = _Slurm(config, run, book, _Merger(run, manifest), console)
    queue = slurmctl.queued(slurm.name)
    if queue is None:
        raise ConfigError("--runner slurm: squeue cannot reach the Slurm controller; is slurmctld up?")
    indices = list(index_of.values())
    slurm.adopt(queue, indices)
    for index in indices:
        slurm.merge_finished(index, queue)
    by_abbr = {p.config.abbr: p for p in prepared}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    to_submit = []
    for task, index in index_of.items():
        if index in slurm.active:
            continue
        key = (task.model, task.dataset)
        if key not in records:
            records[key] = PredictionStore(run.predictions(*key)).load()
        if _needs_work(book.tasks[index], by_abbr[task.dataset], records[key], previous):
            to_submit.append(index)
    if to_submit:
        slurm.submit(to_submit)
    await slurm.wait()
    outcome = InferenceOutcome(names=names, plan=plan)
    for task, index in index_of.items():
        stats = slurm.results.get(index, {}).get("stats")
        if stats:
            outcome.stats[task] = TaskStats(**stats)
    return outcome
