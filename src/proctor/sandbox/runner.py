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
from pathlib import Path
from typing import Sequence

from proctor.errors import ProctorError
from proctor.sandbox.cgroups import hierarchy
from proctor.sandbox.cgroups import remove as remove_cgroup
from proctor.sandbox.isolation import LAUNCHER, NONE, Isolation, base_python, isolation
from proctor.sandbox.limits import Limits

# Far above any real uid; the launcher adds its pid, so concurrent sandboxes never share a uid.
UID_BASE = 2_000_000_000
SETUP_FAILED = 125


class SandboxError(ProctorError, RuntimeError):
    """The sandbox itself failed (not the program): no verdict can be given. A ProctorError, so
    that `proctor run` ends with its one line (and what to do), not a traceback."""


_NO_NAMESPACES = "PROCTOR_SANDBOX=none runs programs without namespaces (weaker isolation: see the README's code sandbox)"


@dataclass(frozen=True)
class Result:
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False  # past the wall-clock limit, or killed by the CPU-time limit
    output_overflow: bool = False  # printed more than Limits.output_bytes: killed


def _config(iso: Isolation, limits: Limits, workdir: str | None, keep_fds: Sequence[int] = ()) -> dict[str, object]:
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
        "limits": limits.rlimits(limits.plan(iso.nproc_enforced, bool(iso.memory_cgroup))),
        "env": env if iso.mode != "none" else {**env, "HOME": workdir, "TMPDIR": workdir},
        "workdir": workdir,
        "keep_fds": list(keep_fds),
        "parent": os.getpid(),
        "owner": owner_pid(),
    }


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------ who owns the sandboxes
OWNER_ENV = "PROCTOR_SANDBOX_OWNER"
_owner: tuple[int, int] | None = None  # (this process's pid, its owner)


def _ancestors(pid: int) -> list[int]:
    chain = []
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
        chain.append(pid)
    return chain


_tied: int | None = None  # the pid of this process once it is tied to its parent


def _worker_dies_with_parent() -> None:
    """A worker process (multiprocessing) that starts sandboxes dies with the process that
    started it: an orphaned pool worker would otherwise wait on its task queue forever (and keep
    starting programs). Done when the first sandbox starts, not at import: the parent-death signal
    follows the thread that forked the worker, which a pool's user keeps alive while it works."""
    global _tied
    if _tied == os.getpid():
        return
    _tied = os.getpid()
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None:
        _die_with_parent(parent.pid)


def _die_with_parent(parent: int | None) -> None:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)  # the parent died before PDEATHSIG was set


def owner_pid() -> int:
    """The Proctor process whose death ends every sandbox started from here: this process, or,
    in a worker process of it (multiprocessing), the process that set PROCTOR_SANDBOX_OWNER,
    when that is an ancestor of ours."""
    global _owner
    me = os.getpid()
    if _owner is None or _owner[0] != me:
        import multiprocessing

        owner = me
        value = os.environ.get(OWNER_ENV, "")
        parent = multiprocessing.parent_process()
        if parent is not None and value.isdigit() and int(value) in _ancestors(me):
            owner = int(value)
        else:
            os.environ[OWNER_ENV] = str(me)  # for the worker processes we start
        _owner = (me, owner)
    return _owner[1]


owner_pid()  # at import, so that worker processes forked or spawned later inherit the owner


# ------------------------------------------------------------------ running
class _Proc:
    """One launcher process: its program's source going in, its output coming out."""

    def __init__(self, source: bytes, limits: Limits, iso: Isolation, keep_fds: Sequence[int] = ()) -> None:
        self.limits, self.mode = limits, iso.mode
        _worker_dies_with_parent()
        try:
            os.kill(owner_pid(), 0)
        except ProcessLookupError:
            raise SandboxError("the Proctor process that owns this run is gone: no program is started") from None
        except PermissionError:
            pass
        self.workdir = tempfile.mkdtemp(prefix="proctor-sbx-") if iso.mode == "none" else None
        self.cgroup: Path | None = None
        cfg = _config(iso, limits, self.workdir, keep_fds)
        self.start = time.monotonic()
        try:
            if iso.memory_cgroup:
                found = hierarchy()
                if found is None:
                    raise SandboxError("the memory cgroup found at start is no longer there; "
                                       "PROCTOR_SANDBOX_CGROUP=0 runs without one")
                try:
                    self.cgroup = found.make(limits.memory_bytes, limits.processes)
                except OSError as e:
                    raise SandboxError(f"cannot make a memory cgroup for the program ({e}); "
                                       "PROCTOR_SANDBOX_CGROUP=0 runs without one") from None
                cfg["cgroup"] = str(self.cgroup / "cgroup.procs")
            self.popen = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER, json.dumps(cfg)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={}, cwd=self.workdir or "/", start_new_session=True, close_fds=True, pass_fds=tuple(keep_fds),
            )
        except BaseException:
            self.cleanup()
            raise
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        self.pgid = self.popen.pid  # a new session: the launcher leads its own process group
        self.out, self.err = bytearray(), bytearray()
        self.pending = memoryview(source)
        self.open_streams = 2
        self.overflow = self.timed_out = False
        self.end: float | None = None

    def register(self, sel: selectors.BaseSelector) -> None:
        p = self.popen
        assert p.stdin and p.stdout and p.stderr
        for f, buf in ((p.stdout, self.out), (p.stderr, self.err)):
            os.set_blocking(f.fileno(), False)
            sel.register(f.fileno(), selectors.EVENT_READ, (self, buf))
        os.set_blocking(p.stdin.fileno(), False)
        if self.pending:
            sel.register(p.stdin.fileno(), selectors.EVENT_WRITE, (self, None))
        else:
            p.stdin.close()

    def ready(self, sel: selectors.BaseSelector, fd: int, buf: bytearray | None) -> None:
        if buf is None:  # stdin wants more of the source
            try:
                n = os.write(fd, self.pending[:65536])
            except (BrokenPipeError, BlockingIOError):
                n = len(self.pending)
            self.pending = self.pending[n:]
            if not self.pending:
                sel.unregister(fd)
                assert self.popen.stdin
                self.popen.stdin.close()
            return
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(fd)
            self.open_streams -= 1
            return
        room = self.limits.output_bytes - len(buf)
        buf += chunk[: max(room, 0)]
        if len(chunk) > room:
            self.overflow = True
            self.stop(sel)

    def stop(self, sel: selectors.BaseSelector | None = None) -> None:
        """Stop reading and kill what is left of the program."""
        if sel is not None:
            for f in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
                if f is not None and not f.closed:
                    try:
                        sel.unregister(f.fileno())
                    except (KeyError, ValueError):
                        pass
        self.open_streams = 0
        if self.end is None:
            self.end = time.monotonic()
        _terminate(self.popen)

    @property
    def reading(self) -> bool:
        return self.open_streams > 0

    def finish(self) -> Result:
        """Kill whatever is left of the group and the Result."""
        if self.end is None:
            self.end = time.monotonic()
        _terminate(self.popen)
        _kill_group(self.pgid)  # whatever is left of the group (in "none" mode: orphans that kept it)
        for f in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if f is not None and not f.closed:
                f.close()
        self.popen.wait()
        self.cleanup()
        duration = self.end - self.start
        stdout, stderr = self.out.decode("utf-8", "replace"), self.err.decode("utf-8", "replace")
        rc = self.popen.returncode
        timed_out = self.timed_out
        if rc == SETUP_FAILED and "proctor-sandbox:" in stderr and not (timed_out or self.overflow):
            what = f"the code sandbox could not be set up ({stderr.strip().splitlines()[-1]})"
            raise SandboxError(what if self.mode == "none" else f"{what}; {_NO_NAMESPACES}")
        if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and not self.overflow and _cpu_spent(duration, self.limits)):
            timed_out = True  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one
        return Result(rc, stdout, stderr, duration, timed_out=timed_out, output_overflow=self.overflow)

    def cleanup(self) -> None:
        if getattr(self, "cgroup", None) is not None:
            assert self.cgroup is not None
            remove_cgroup(self.cgroup)
            self.cgroup = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _terminate(popen: subprocess.Popen[bytes]) -> None:
    """Ask a running launcher to kill its program and all it started (it is a subreaper, so in
    "none" mode this reaches orphans in other sessions too), then make sure."""
    if popen.poll() is not None:
        return
    try:
        popen.send_signal(signal.SIGTERM)
        popen.wait(2.0)
    except subprocess.TimeoutExpired:
        pass
    except OSError:
        pass


def _pump(procs: Sequence[_Proc], deadline: float, until: Sequence[_Proc]) -> None:
    """Feed and read `procs` until every one of `until` has ended (or the deadline passed)."""
    with selectors.DefaultSelector() as sel:
        for p in procs:
            p.register(sel)
        while any(p.reading for p in until):
            left = deadline - time.monotonic()
            if left <= 0:
                for p in until:
                    if p.reading:
                        p.timed_out = True
                break
            for key, _ in sel.select(min(left, 1.0)):
                proc, buf = key.data
                proc.ready(sel, key.fd, buf)
        # The streams closed: the launcher ends with its child.
        for p in until:
            if p.timed_out or p.overflow:
                continue
            try:
                p.popen.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                p.timed_out = True
            if p.end is None:
                p.end = time.monotonic()


def run_program(source: str, limits: Limits = Limits(), iso: Isolation | None = None) -> Result:
    """Run `source` as `python -I prog.py` in a fresh sandbox; never raises for what the program
    does, only SandboxError when the sandbox could not be set up."""
    iso = isolation() if iso is None else iso
    proc = _Proc(source.encode("utf-8", "surrogateescape"), limits, iso)
    try:
        _pump([proc], proc.start + limits.timeout_s, [proc])
    finally:
        result = proc.finish()
    return result


def run_split(candidate: str, tester: str, limits: Limits = Limits(), iso: Isolation | None = None,
              ) -> tuple[Result, Result]:
    """Run two programs side by side, each in a sandbox of its own, joined by two pipes: in each,
    fd 3 reads what the other writes on its fd 4 (see proctor.sandbox.split). Ends when the
    tester ends (the candidate is killed then) or at the time limit, which covers both; returns
    (candidate result, tester result)."""
    iso = isolation() if iso is None else iso
    req_r, req_w = os.pipe()  # tester -> candidate
    rep_r, rep_w = os.pipe()  # candidate -> tester
    fds = [req_r, req_w, rep_r, rep_w]
    procs: list[_Proc] = []
    try:
        procs.append(_Proc(candidate.encode("utf-8", "surrogateescape"), limits, iso, (req_r, rep_w)))
        procs.append(_Proc(tester.encode("utf-8", "surrogateescape"), limits, iso, (rep_r, req_w)))
        for fd in fds:
            os.close(fd)
        fds = []
        cand, test = procs
        _pump(procs, test.start + limits.timeout_s, [test])
        cand.stop()
    finally:
        for fd in fds:
            os.close(fd)
        results = []
        error: BaseException | None = None
        for p in procs:
            try:
                results.append(p.finish())
            except SandboxError as e:
                error = error or e
        if error is not None:
            raise error
    return results[0], results[1]


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


__all__ = ["NONE", "Result", "SandboxError", "available_cores", "owner_pid", "run_many", "run_program", "run_split"]
