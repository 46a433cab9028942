"""Which isolation this machine allows, probed once per process and logged once."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("proctor.sandbox")

LAUNCHER = str(Path(__file__).with_name("_launcher.py"))


@dataclass(frozen=True)
class Isolation:
    """What the sandbox can guarantee here; record `as_manifest()` in a run's manifest.

    mode: "root" (namespaces + its own unprivileged uid), "userns" (namespaces inside a user
    namespace) or "none" (rlimits, empty environment, fresh directory only).
    """

    mode: str
    network: bool  # a new network namespace: no interface but a down loopback
    filesystem_readonly: bool  # everything read-only except the program's own tmpfs
    pid_namespace: bool  # the program cannot see or signal other processes; all die with it
    nproc_enforced: bool  # RLIMIT_NPROC applies (not to root's uid: "userns" or "none" as root: False)
    writable_mounts: tuple[str, ...] = ()
    reason: str = ""  # why "none"
    flags: int = 0
    memory_cgroup: int = 0  # 1 or 2: each program's memory is bounded by a cgroup of that version; 0: none

    def as_manifest(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("flags")
        data["writable_mounts"] = list(self.writable_mounts)
        return data


# RLIMIT_NPROC does not bind root (CAP_SYS_RESOURCE): as root, "none" mode does not enforce it.
NONE = Isolation("none", False, False, False, os.geteuid() != 0, reason="disabled")

_lock = threading.Lock()
_cached: Isolation | None = None


@functools.cache
def base_python() -> tuple[str, str]:
    """(prefix, executable relative to it) of the interpreter that runs the programs: this
    one's base installation (a virtual environment's packages are not visible inside)."""
    prefix = os.path.realpath(sys.base_prefix)
    exe = os.path.realpath(sys.executable)
    if not exe.startswith(prefix + os.sep):  # a venv's python links to the base one
        candidate = os.path.join(prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
        exe = candidate if os.path.exists(candidate) else exe
    rel = os.path.relpath(exe, prefix) if exe.startswith(prefix + os.sep) else ""
    return prefix, rel


def probe() -> Isolation:
    """Ask the kernel (in a throwaway launcher) which mode works."""
    prefix, rel = base_python()
    if not rel:
        return Isolation("none", False, False, False, os.geteuid() != 0, reason=f"interpreter outside {prefix}")
    cfg = {"probe": True, "tmpfs_bytes": 1 << 20, "prefix": prefix}
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-S", LAUNCHER, json.dumps(cfg)],
            capture_output=True, env={}, timeout=60, start_new_session=True, check=False,
        )
        data = json.loads(out.stdout.decode() or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return Isolation("none", False, False, False, os.geteuid() != 0, reason=f"probe failed: {e}")
    mode = data.get("mode", "none")
    if mode == "none":
        return Isolation("none", False, False, False, os.geteuid() != 0, reason=data.get("error", "") or "unknown")
    writable = tuple(data.get("writable_mounts", ()))
    return Isolation(
        mode=mode,
        network=True,
        filesystem_readonly=not writable,
        pid_namespace=True,
        nproc_enforced=not (mode == "userns" and os.geteuid() == 0),
        writable_mounts=writable,
        flags=int(data["flags"]),
    )


def isolation() -> Isolation:
    """The isolation available here (probed on first use; "none" when PROCTOR_SANDBOX=none)."""
    global _cached
    with _lock:
        if _cached is None:
            if os.environ.get("PROCTOR_SANDBOX", "").lower() == "none":
                _cached = NONE
            else:
                _cached = probe()
                if _cached.mode == "root":  # the launcher's child joins its group while it is still root
                    from dataclasses import replace

                    from proctor.sandbox.cgroups import hierarchy

                    found = hierarchy()
                    if found is not None:
                        _cached = replace(_cached, memory_cgroup=found.version)
            if _cached.mode == "none":
                log.warning(
                    "code sandbox: no namespaces here (%s): programs run with rlimits, an empty environment "
                    "and a fresh directory only, with network access and the user's file permissions",
                    _cached.reason,
                )
            elif _cached.writable_mounts:
                log.warning("code sandbox: these mounts stay writable: %s", ", ".join(_cached.writable_mounts))
            else:
                log.info("code sandbox: %s mode (no network, read-only filesystem, own pid namespace)", _cached.mode)
        return _cached
