"""A sandbox for running untrusted Python programs (generated code under test).

    from proctor.sandbox import Limits, run_program, run_many, isolation
    result = run_program("print(1)", Limits(timeout_s=5))
    isolation().as_manifest()   # what is guaranteed on this machine: record it with the run

Each program runs as `python -I` (the base interpreter, no site or env influence) in a fresh
directory with an empty environment, rlimits (CPU, address space, processes, file size, open
files), a wall-clock timeout that kills its whole process group and a cap on captured output.
Where the kernel allows (root, or unprivileged user namespaces) it also gets new mount, network,
pid, ipc and uts namespaces: no network, a read-only view of the filesystem except its own
size-capped tmpfs, no view of other processes, and (as root) an unprivileged uid of its own.
See isolation.Isolation for what is guaranteed where; _launcher.py for how.
"""

from proctor.sandbox.isolation import Isolation, isolation
from proctor.sandbox.limits import Limits
from proctor.sandbox.runner import Result, SandboxError, available_cores, run_many, run_program

__all__ = ["Isolation", "Limits", "Result", "SandboxError", "available_cores", "isolation", "run_many", "run_program"]
