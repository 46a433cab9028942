"""Run Python programs in the sandbox: one launcher process per program, many at once."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from proctor.sandbox.isolation import LAUNCHER, NONE, Isolation, base_python, isolation
from proctor.sandbox.limits import Limits

# Far above any real uid; the launcher adds its pid, so concurrent sandboxes never share a uid.
UID_BASE = 2_000_000_000
SETUP_FAILED = 125


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): no verdict can be given."""


@dataclass(frozen=True)
class Result:
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False  # past the wall-clock limit, or killed by the CPU-time limit
    output_overflow: bool = False  # printed more than Limits.output_bytes: killed


def _config(iso: Isolation, limits: Limits, workdir: str | None) -> dict[str, object]:
    prefix, rel = base_python()
    env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    return {
        "mode": iso.mode,
        "flags": iso.flags,
        "uid_base": UID_BASE,
        "tmpfs_bytes": limits.tmpfs_bytes,
        "prefix": prefix,
        "python_rel": rel,
        "python": sys.executable,
        "limits": limits.rlimits(),
        "env": env if iso.mode != "none" else {**env, "HOME": workdir, "TMPDIR": workdir},
        "workdir": workdir,
    }


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(source: str, limits: Limits = Limits(), iso: Isolation | None = None) -> Result:
    """Run `source` as `python -I prog.py` in a fresh sandbox; never raises for what the program
    does, only SandboxError when the sandbox could not be set up."""
    iso = isolation() if iso is None else iso
    workdir = tempfile.mkdtemp(prefix="proctor-sbx-") if iso.mode == "none" else None
    try:
        return _run(source.encode("utf-8", "surrogateescape"), limits, iso, workdir)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(source: bytes, limits: Limits, iso: Isolation, workdir: str | None) -> Result:
    cfg = _config(iso, limits, workdir)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", LAUNCHER, json.dumps(cfg)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={}, cwd=workdir or "/", start_new_session=True, close_fds=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    pgid = proc.pid  # a new session: the launcher leads its own process group
    out_buf, err_buf = bytearray(), bytearray()
    bufs = {proc.stdout.fileno(): out_buf, proc.stderr.fileno(): err_buf}
    pending = memoryview(source)
    stdin_fd = proc.stdin.fileno()
    timed_out = overflow = False
    deadline = start + limits.timeout_s
    try:
        with selectors.DefaultSelector() as sel:
            for f in (proc.stdout, proc.stderr):
                os.set_blocking(f.fileno(), False)
                sel.register(f.fileno(), selectors.EVENT_READ)
            os.set_blocking(stdin_fd, False)
            if pending:
                sel.register(stdin_fd, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
            open_streams = 2
            while open_streams:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(left):
                    fd = key.fd
                    if fd == stdin_fd and not proc.stdin.closed:
                        try:
                            n = os.write(fd, pending[:65536])
                        except (BrokenPipeError, BlockingIOError):
                            n = len(pending)
                        pending = pending[n:]
                        if not pending:
                            sel.unregister(fd)
                            proc.stdin.close()
                        continue
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(fd)
                        open_streams -= 1
                        continue
                    buf = bufs[fd]
                    room = limits.output_bytes - len(buf)
                    buf += chunk[: max(room, 0)]
                    if len(chunk) > room:
                        overflow = True
                        open_streams = 0
                        break
            # The streams closed (or we stop reading): the launcher ends with its child.
            if not (timed_out or overflow):
                try:
                    proc.wait(max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    timed_out = True
    finally:
        _kill_group(pgid)  # whatever is left of the group (in "none" mode: orphans that kept it)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if not f.closed:
                f.close()
        proc.wait()
    duration = time.monotonic() - start
    stdout, stderr = out_buf.decode("utf-8", "replace"), err_buf.decode("utf-8", "replace")
    rc = proc.returncode
    if rc == SETUP_FAILED and "proctor-sandbox:" in stderr and not (timed_out or overflow):
        raise SandboxError(stderr.strip().splitlines()[-1])
    if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and not overflow and _cpu_spent(duration, limits)):
        timed_out = True  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one
    return Result(rc, stdout, stderr, duration, timed_out=timed_out, output_overflow=overflow)


def _cpu_spent(duration: float, limits: Limits) -> bool:
    """A SIGKILL we did not send after about the CPU limit: RLIMIT_CPU's hard kill."""
    return duration >= limits.timeout_s * 0.9


def run_many(
    sources: Sequence[str], limits: Limits = Limits(), *, workers: int | None = None, iso: Isolation | None = None
) -> list[Result]:
    """`run_program` for each source, `workers` at a time (default: one per available core)."""
    iso = isolation() if iso is None else iso
    workers = workers or available_cores()
    if workers <= 1 or len(sources) <= 1:
        return [run_program(s, limits, iso) for s in sources]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda s: run_program(s, limits, iso), sources))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


__all__ = ["NONE", "Result", "SandboxError", "available_cores", "run_many", "run_program"]
