"""Which GPUs this machine offers, and handing disjoint sets of them to model workers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections import deque
from typing import Sequence

from proctor.errors import ConfigError


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPU ids this run may use: CUDA_VISIBLE_DEVICES when set (as CUDA reads it), else nvidia-smi's."""
    env = os.environ if environ is None else environ
    declared = env.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        ids = []
        for part in declared.split(","):
            part = part.strip()
            if not part or part.startswith("-"):
                break  # CUDA stops at the first invalid id
            ids.append(part)
        return ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()] if out.returncode == 0 else []


def replicas_for(num_gpus: int, n_gpus: int, n_tasks: int, max_workers: int | None) -> int:
    """How many copies of a local model to load: one per free GPU set, no more than it has tasks."""
    if num_gpus <= 0 or n_gpus <= 0:
        return 1
    return max(1, min(n_gpus // num_gpus, n_tasks, max_workers or n_tasks))


def check_fits(model: str, num_gpus: int, n_gpus: int) -> None:
    if num_gpus > n_gpus:
        raise ConfigError(
            f"model {model} asks for num_gpus={num_gpus} but {n_gpus} GPU(s) are visible "
            "(CUDA_VISIBLE_DEVICES / nvidia-smi); lower num_gpus or run on a bigger machine (--runner ray)"
        )


class GpuPool:
    """Hands out disjoint GPU sets, all-or-nothing, first come first served (no model starves)."""

    def __init__(self, gpus: Sequence[str]) -> None:
        self.gpus = list(gpus)
        self._free = list(gpus)
        self._waiters: deque[tuple[int, asyncio.Future[list[str]]]] = deque()

    @property
    def free(self) -> list[str]:
        return list(self._free)

    async def acquire(self, n: int) -> list[str]:
        if n > len(self.gpus):
            raise ConfigError(f"{n} GPUs asked for, {len(self.gpus)} visible")
        if not self._waiters and len(self._free) >= n:
            return self._take(n)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())  # granted just as we were cancelled: give it back
            else:
                self._waiters = deque(w for w in self._waiters if w[1] is not future)
                self._wake()
            raise

    def _take(self, n: int) -> list[str]:
        # Lowest ids first, so assignments are predictable: [0, 1], then [2, 3].
        self._free.sort(key=lambda g: (len(g), g))
        taken, self._free = self._free[:n], self._free[n:]
        return taken

    def release(self, gpus: Sequence[str]) -> None:
        self._free.extend(g for g in gpus if g not in self._free)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and len(self._free) >= self._waiters[0][0]:
            n, future = self._waiters.popleft()
            if not future.done():
                future.set_result(self._take(n))
