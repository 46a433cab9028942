"""The memory limit bounds the whole program, and the manifest says what was enforced (issue 20 §4)."""

from __future__ import annotations

import os

import pytest

from proctor.sandbox import Limits, isolation, run_program
from proctor.sandbox.isolation import NONE
from proctor.sandbox.limits import PER_PROCESS_MIN
from proctor.scoring.code_exec import CodeExecScorer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox needs Linux")

# Starts up to 7 child processes, each filling `MIB` MiB (touched, so that a memory cgroup counts
# it) and holding it a while; those that were never killed print "done". The parent stays small,
# so that a cgroup's OOM killer picks a child, not the program's pid 1.
HOLDERS = """
import os, time
MIB = {mib}
def hold():
    try:
        block = b"x" * (MIB << 20)
    except MemoryError:
        return
    time.sleep(1.5)
    os.write(1, b"done\\n")
kids = []
for _ in range(7):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        hold()
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"""


def test_plan_keeps_processes_times_memory_within_the_limit() -> None:
    limits = Limits(memory_bytes=1 << 30, processes=32)
    plan = limits.plan(nproc_enforced=True)
    assert plan.processes * plan.per_process_bytes <= limits.memory_bytes
    assert plan.processes == (1 << 30) // PER_PROCESS_MIN and plan.bound == "processes_x_per_process"
    small = Limits(memory_bytes=64 << 20, processes=32).plan(True)
    assert (small.processes, small.per_process_bytes) == (1, 64 << 20)
    # Where RLIMIT_NPROC does not bind, the per-process limit is all there is, and it says so.
    loose = limits.plan(nproc_enforced=False)
    assert loose.bound == "per_process" and not loose.as_manifest(limits)["whole_program_bounded"]


def test_memory_of_all_processes_together_stays_under_the_limit() -> None:
    iso = isolation()
    if not (iso.nproc_enforced or iso.memory_cgroup):
        pytest.skip(f"neither RLIMIT_NPROC nor a memory cgroup applies here ({iso.mode}): only each process is bounded")
    limit = 1 << 30
    r = run_program(HOLDERS.format(mib=180), Limits(timeout_s=15.0, memory_bytes=limit))
    held = r.stdout.count("done")
    assert held >= 1, r.stderr  # one process can still use a good part of it
    assert held * (180 << 20) <= limit, f"{held} processes held 180 MiB each at once under a 1 GiB limit"


def test_plan_without_a_cgroup_is_the_rlimit_product() -> None:
    # The fallback's numbers whatever this machine has (the test above runs what it has).
    limits = Limits(memory_bytes=1 << 30, processes=32)
    cg = limits.plan(nproc_enforced=True, cgroup=True)
    assert (cg.bound, cg.per_process_bytes, cg.processes) == ("cgroup", 1 << 30, 32)
    assert limits.plan(nproc_enforced=True).bound == "processes_x_per_process"


def test_none_mode_as_root_does_not_claim_nproc() -> None:
    assert NONE.nproc_enforced == (os.geteuid() != 0)
    r = run_program(
        "import os\nn = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n    n += 1\nprint(n)",
        Limits(timeout_s=10.0, processes=8, memory_bytes=8 << 30), iso=NONE,
    )
    forks = int(r.stdout.strip() or 0)
    if forks >= 8:  # RLIMIT_NPROC did not hold: the manifest must not say it did
        assert not NONE.nproc_enforced and not NONE.as_manifest()["nproc_enforced"]


def test_code_exec_manifest_says_what_bounds_memory() -> None:
    env = CodeExecScorer(memory_mb=1024).environment()
    limits = env["limits"]
    enforced = env["sandbox"]["nproc_enforced"] or bool(env["sandbox"]["memory_cgroup"])
    expected = ("cgroup" if env["sandbox"]["memory_cgroup"] else
                "processes_x_per_process" if env["sandbox"]["nproc_enforced"] else "per_process")
    assert limits["memory_bound"] == expected
    assert limits["whole_program_bounded"] is enforced
    if expected == "processes_x_per_process":
        assert limits["processes"] * limits["per_process_bytes"] <= 1024 << 20
    assert env["verdict"]["isolated_from_candidate"] is env["sandbox"]["pid_namespace"]
