"""One Slurm job: one (model, dataset shard) task of a run, run by the local runner into its own folder.

`python -m proctor.engine.slurm_job RUN_ROOT` inside a job array element: the element's index
names the task in `RUN_ROOT/slurm/tasks.json`; the run's config (secrets included) comes in the
job's environment, never on disk. The job writes its records, manifest and log into
`slurm/out/<index>/<job id>/` and, last, `result.json`; the submitting process, the only writer
of the run's own files, merges that folder once the job has left the queue. Records the run
already holds count as done, so a resubmitted job sends only what is missing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import socket
import sys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from proctor.config.schema import RunConfig
from proctor.engine.diskio import write_json_atomic
from proctor.engine.rundir import RunDir
from proctor.errors import ConfigError, DataError, ProctorError

log = logging.getLogger("proctor.engine")

CONFIG_ENV = "PROCTOR_SLURM_CONFIG"


@dataclass(frozen=True)
class JobTask:
    """A task as the submitter wrote it for its jobs (tasks.json keeps them by array index)."""

    model: str  # the model's name in the run (its predictions' folder)
    model_index: int  # its place in the run config's models
    dataset: str
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}[{self.start}:{self.end}]"


def slurm_dir(run: RunDir) -> Path:
    return run.root / "slurm"


def read_tasks(run: RunDir) -> list[JobTask]:
    path = slurm_dir(run) / "tasks.json"
    if not path.is_file():
        return []
    return [JobTask(**t) for t in json.loads(path.read_text(encoding="utf-8"))]


def job_folder(run: RunDir, index: int, job_id: str) -> RunDir:
    """Where the job `job_id` (`<array id>_<index>`) of task `index` writes."""
    return RunDir(slurm_dir(run) / "out" / str(index) / job_id)


def encode_config(config: RunConfig) -> str:
    """The run config for the job's environment: as given (unset fields stay unset, so that
    defaults that depend on them behave the same), API keys in clear, compressed."""
    data = config.model_dump(mode="json", exclude_unset=True, exclude={"judge"})
    for model, given in zip(data.get("models", []), config.models):
        model["type"] = given.type  # the union's tag, unset when it is the default
        key = getattr(given, "api_key", None)
        if key is not None:
            model["api_key"] = key.get_secret_value()
    raw = zlib.compress(json.dumps(data, ensure_ascii=False).encode("utf-8"), 9)
    return base64.b64encode(raw).decode("ascii")


def decode_config(text: str) -> RunConfig:
    data = json.loads(zlib.decompress(base64.b64decode(text)).decode("utf-8"))
    return RunConfig(**data)


def _one_task_config(config: RunConfig, task: JobTask) -> RunConfig:
    """The run config narrowed to the task's model and dataset, run locally in this job."""
    if not 0 <= task.model_index < len(config.models):
        raise ConfigError(f"slurm job: the run has no model #{task.model_index}")
    datasets = [d for d in config.datasets if d.abbr == task.dataset]
    if not datasets:
        raise ConfigError(f"slurm job: the run has no dataset {task.dataset}")
    return config.model_copy(update={
        "models": [config.models[task.model_index]], "datasets": datasets, "runner": "local",
        "debug": False, "reuse": None, "judge": None,
    })


async def run_job(config: RunConfig, run: RunDir, task: JobTask, out: RunDir) -> dict[str, Any]:
    """Run `task` into `out`; its stats."""
    from proctor.engine.infer import run_inference
    from proctor.engine.local_runner import local_entries
    from proctor.engine.prepare import prepare_dataset
    from proctor.engine.store import PredictionStore

    one = _one_task_config(config, task)
    out.root.mkdir(parents=True, exist_ok=True)
    if run.manifest_path.is_file() and not out.manifest_path.is_file():
        # The run's manifest as the job's starting point: `-r` checks the model against it.
        shutil.copyfile(run.manifest_path, out.manifest_path)
    prepared = [prepare_dataset(d, one.data_dir) for d in one.datasets]
    known = PredictionStore(run.predictions(task.model, task.dataset)).load(repair=False)
    entries = local_entries(one, 1)
    outcome = await run_inference(
        one, out, prepared, entries, argv=None, console=None, runner="slurm",
        select=lambda t: (t.dataset, t.start, t.end) == (task.dataset, task.start, task.end),
        known={(task.model, task.dataset): known},
    )
    if not outcome.plan:  # another data file on this node, or other shard bounds: nothing of it is run
        raise ConfigError(f"slurm job: {task.label} is not a task of the run here ({len(prepared[0].items)} items "
                          f"of {task.dataset} on this node); the nodes must read the same data files")
    if outcome.names != [task.model]:
        raise ConfigError(f"slurm job: the model calls itself {outcome.names[0]!r} here, but the run planned it "
                          f"as {task.model!r}; give it an abbr")
    stats = next(iter(outcome.stats.values()), None)
    return asdict(stats) if stats is not None else {}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", force=True)
    if len(args) != 1:
        print("usage: python -m proctor.engine.slurm_job RUN_ROOT (inside a Slurm job array)", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]))
    array_id, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if not array_id or index is None or not index.isdigit():
        print("error: slurm job: not inside a Slurm job array (SLURM_ARRAY_TASK_ID unset)", file=sys.stderr)
        return 2
    out = job_folder(run, int(index), f"{array_id}_{index}")
    result: dict[str, Any] = {"ok": False, "host": socket.gethostname(), "job": f"{array_id}_{index}"}
    code = 1
    try:
        tasks = read_tasks(run)
        if int(index) >= len(tasks):
            raise ConfigError(f"slurm job: {slurm_dir(run) / 'tasks.json'} has no task #{index}")
        encoded = os.environ.get(CONFIG_ENV)
        if not encoded:
            raise ConfigError(f"slurm job: ${CONFIG_ENV} is not set; the job must get the submitter's "
                              "environment (leave out --export=NONE)")
        result["stats"] = asyncio.run(run_job(decode_config(encoded), run, tasks[int(index)], out))
        result["ok"], code = True, 0
    except ProctorError as exc:
        # A mistake in the config or the data fails every attempt alike: the submitter stops.
        result.update(error=str(exc), user_error=isinstance(exc, (ConfigError, DataError)))
        code = exc.exit_code
        print(f"error: {exc}", file=sys.stderr)
    except Exception as exc:  # the submitter reports it and submits the job again
        result.update(error=f"{type(exc).__name__}: {exc}", user_error=False)
        import traceback

        traceback.print_exc()
    write_json_atomic(out.root / "result.json", result)
    return code


if __name__ == "__main__":
    sys.exit(main())
