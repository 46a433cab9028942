"""What one sandboxed program may use."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-program limits. `timeout_s` is wall-clock (the whole process group is killed), the
    CPU rlimit is `timeout_s` rounded up plus one second; the rest are rlimits, except
    `output_bytes` (per stream; the program is killed when it prints more) and `tmpfs_bytes`
    (the size of the program's writable /tmp in the namespaced modes). `memory_bytes` bounds the
    whole program where RLIMIT_NPROC applies: `processes` is lowered so that processes x
    address space per process stays within it (see `plan`)."""

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30  # the whole program: RLIMIT_AS x RLIMIT_NPROC
    processes: int = 32  # at most (RLIMIT_NPROC: processes and threads of the sandbox's own uid)
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE
    open_files: int = 128  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20
    tmpfs_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        for name in ("memory_bytes", "processes", "file_bytes", "open_files", "output_bytes", "tmpfs_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def plan(self, nproc_enforced: bool, cgroup: bool = False) -> "Plan":
        """How the memory limit is enforced for the whole program (see Plan)."""
        if cgroup:
            return Plan(self.memory_bytes, self.processes, "cgroup")
        if not nproc_enforced:
            return Plan(self.memory_bytes, self.processes, "per_process")
        processes = max(1, min(self.processes, self.memory_bytes // PER_PROCESS_MIN))
        return Plan(self.memory_bytes // processes, processes, "processes_x_per_process")

    def rlimits(self, plan: "Plan | None" = None) -> dict[str, int]:
        plan = plan or self.plan(True)
        return {
            "RLIMIT_CPU": math.ceil(self.timeout_s) + 1,
            "RLIMIT_AS": plan.per_process_bytes,
            "RLIMIT_NPROC": plan.processes,
            "RLIMIT_FSIZE": self.file_bytes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }


# A Python process with its libraries needs tens of MiB of address space; a quarter GiB leaves the
# program room to work while a 1 GiB limit still allows four processes (or threads).
PER_PROCESS_MIN = 256 << 20


@dataclass(frozen=True)
class Plan:
    """What bounds a program's memory. "cgroup": a memory cgroup of its own bounds all its
    processes together (each also gets the whole limit as its address space). Without one,
    "processes_x_per_process": RLIMIT_NPROC holds it to
    `processes` processes and threads, each with `per_process_bytes` of address space, so the
    product stays within Limits.memory_bytes. "per_process": RLIMIT_NPROC does not apply here
    (root's uid, or a user namespace entered as root), so only each process is bounded."""

    per_process_bytes: int
    processes: int
    bound: str

    def as_manifest(self, limits: Limits) -> dict[str, object]:
        return {
            "memory_bytes": limits.memory_bytes,
            "memory_bound": self.bound,
            "whole_program_bounded": self.bound != "per_process",
            "per_process_bytes": self.per_process_bytes,
            "processes": self.processes,
        }
