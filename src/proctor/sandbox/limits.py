"""What one sandboxed program may use."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-program limits. `timeout_s` is wall-clock (the whole process group is killed), the
    CPU rlimit is `timeout_s` rounded up plus one second; the rest are rlimits, except
    `output_bytes` (per stream; the program is killed when it prints more) and `tmpfs_bytes`
    (the size of the program's writable /tmp in the namespaced modes)."""

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    processes: int = 32  # RLIMIT_NPROC: processes and threads of the sandbox's own uid / namespace
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

    def rlimits(self) -> dict[str, int]:
        return {
            "RLIMIT_CPU": math.ceil(self.timeout_s) + 1,
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_FSIZE": self.file_bytes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }
