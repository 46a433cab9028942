"""Talking to Slurm through its commands (sbatch, squeue, scancel): no library, no accounting needed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

from proctor.errors import BackendError, ConfigError

log = logging.getLogger("proctor.engine")

COMMAND_TIMEOUT_S = 60  # a controller that does not answer in a minute is down for our purposes


@dataclass(frozen=True)
class Submission:
    """What one sbatch call asks for: a job array over `indices`, each element one task."""

    name: str
    indices: tuple[int, ...]
    command: str  # the shell line each element runs (sbatch --wrap)
    output: str  # the log file pattern (%A: the array's id, %a: the element's index)
    options: tuple[str, ...] = ()  # --partition, --gres, --time and the user's --slurm-args


def check_commands() -> None:
    """Refuse a machine without Slurm's commands before a run folder is made."""
    missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        raise ConfigError(
            f"--runner slurm: {', '.join(missing)} not found on PATH; run proctor on a Slurm login node "
            "(or install Slurm's client commands)"
        )


def _run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              env=dict(env) if env is not None else None)
    except subprocess.TimeoutExpired:
        raise BackendError(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S}s: is slurmctld up?") from None
    except OSError as exc:
        raise BackendError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def sbatch(submission: Submission, env: Mapping[str, str]) -> list[str]:
    """Submit; the job ids of the elements (`<array id>_<index>`), in the order of `indices`."""
    argv = [
        "sbatch", "--parsable", f"--job-name={submission.name}",
        f"--array={','.join(map(str, submission.indices))}", f"--output={submission.output}",
        *submission.options, f"--wrap={submission.command}",
    ]
    done = _run(argv, env)
    if done.returncode != 0:
        raise ConfigError(f"sbatch refused the job ({_first_line(done.stderr or done.stdout)}); "
                          "check --partition, --gres, --time and --slurm-args")
    array_id = done.stdout.strip().split(";")[0]  # --parsable: `<id>[;<cluster>]`
    if not array_id.isdigit():
        raise BackendError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
    return [f"{array_id}_{i}" for i in submission.indices]


def queued(name: str) -> dict[str, str] | None:
    """The jobs named `name` that Slurm still holds (pending, running, requeued...) by id
    (`<array id>_<index>`), with their state; None when squeue cannot say (the controller is
    down): nothing may be concluded about a job from that."""
    done = _run(["squeue", "--noheader", "--array", f"--name={name}", "--format=%i|%T"])
    if done.returncode != 0:
        log.warning("squeue failed (%s); asking again later", _first_line(done.stderr))
        return None
    states: dict[str, str] = {}
    for line in done.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state
    return states


def cancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        done = _run(["scancel", *job_ids])
        if done.returncode != 0:
            log.warning("scancel %s failed: %s", " ".join(job_ids), _first_line(done.stderr))


def job_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment (sbatch exports it to the job) plus `extra`."""
    return {**os.environ, **extra}
