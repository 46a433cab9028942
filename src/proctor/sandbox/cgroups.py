"""A memory cgroup per sandboxed program, where this process may make them (as root).

cgroup v2 (the unified hierarchy, pure or hybrid) when this process's cgroup already delegates
the memory controller to its children (`memory` in its `cgroup.subtree_control`); else cgroup v1's
memory hierarchy when it is writable. The program's whole memory (every process, its tmpfs
files) is then bounded by `memory.max` / `memory.limit_in_bytes`, swap included where the kernel
accounts it. Found once per process by really making (and removing) a test group; nothing is
enabled or moved that was not ours. The program joins its group itself (the launcher's child
writes 0 to `cgroup.procs`, opened before the mounts turned read-only, before it drops its
privileges) and the group is emptied and removed when the program ends; groups left by a Proctor
process that was killed are removed by the next one to look.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_lock = threading.Lock()
_found: "Hierarchy | None | bool" = False  # False: not looked for yet


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    base: Path  # this process's own cgroup in it: program groups are made below

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"

    def make(self, memory_bytes: int, processes: int) -> Path:
        """A new group bounded to `memory_bytes` (and `processes` where pids.max exists)."""
        path = self.base / f"proctor-sbx-{os.getpid()}-{secrets.token_hex(6)}"
        path.mkdir()
        try:
            if self.version == 2:
                _write(path / "memory.max", memory_bytes)
                _write(path / "memory.swap.max", 0, optional=True)
                _write(path / "pids.max", processes, optional=True)
            else:
                _write(path / "memory.limit_in_bytes", memory_bytes)
                _write(path / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)  # no swap on top
        except OSError:
            remove(path)
            raise
        return path


def _write(path: Path, value: int, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except FileNotFoundError:
        if not optional:
            raise
    except OSError:
        if not optional:
            raise


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v2 hierarchy (controller None) or v1 `controller`'s."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        num, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if controller is None and num == "0" and names == "":
            return path
        if controller is not None and controller in names.split(","):
            return path
    return None


def _candidates() -> list[Hierarchy]:
    out = []
    v2 = _own_path(None)
    if v2 is not None:
        for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
            if (root / "cgroup.controllers").is_file():
                base = root / v2.lstrip("/")
                try:
                    delegated = "memory" in (base / "cgroup.subtree_control").read_text().split()
                except OSError:
                    delegated = False
                if delegated:
                    out.append(Hierarchy(2, base))
                break
    v1 = _own_path("memory")
    if v1 is not None and (Path("/sys/fs/cgroup/memory") / "memory.limit_in_bytes").is_file():
        out.append(Hierarchy(1, Path("/sys/fs/cgroup/memory") / v1.lstrip("/")))
    return out


def hierarchy() -> Hierarchy | None:
    """Where program groups can be made here (probed once), None where they cannot."""
    global _found
    with _lock:
        if _found is False:
            _found = None
            if os.geteuid() == 0 and os.environ.get("PROCTOR_SANDBOX_CGROUP", "").lower() not in ("0", "no", "none"):
                for h in _candidates():
                    try:
                        test = h.make(64 << 20, 8)
                    except OSError:
                        continue
                    ok = (test / h.limit_file).read_text().strip() == str(64 << 20)
                    remove(test)
                    if ok:
                        _found = h
                        _remove_stale(h)
                        break
        return _found if isinstance(_found, Hierarchy) else None


def _remove_stale(h: Hierarchy) -> None:
    """Groups left by a Proctor process that was killed before it could remove them."""
    try:
        entries = list(h.base.glob("proctor-sbx-*-*"))
    except OSError:
        return
    for path in entries:
        owner = path.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            remove(path, wait_s=0.2)


def remove(path: Path, wait_s: float = 2.0) -> None:
    """Kill whatever is left in the group, then remove it (never raises)."""
    if not path.name.startswith("proctor-sbx-"):
        return  # only a group made here
    end = time.monotonic() + wait_s
    while True:
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > end:
                return
            time.sleep(0.01)
