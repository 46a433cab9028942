"""A Backend over several copies (replicas) of one model, each in a worker process or a Ray actor."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

from proctor.core import Request
from proctor.engine.gpus import GpuPool
from proctor.errors import BackendError
from proctor.models.base import OnResponse

log = logging.getLogger("proctor.engine")


@dataclass(frozen=True)
class ReplicaInfo:
    """What a started replica reports back."""

    name: str
    identity: str
    chat: bool
    devices: str | None = None  # CUDA_VISIBLE_DEVICES as the replica saw it


class Replica(Protocol):
    """One loaded copy of a model somewhere else (a process, an actor)."""

    async def start(self, devices: Sequence[str] | None) -> ReplicaInfo: ...

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None: ...

    async def close(self) -> None: ...


class ReplicatedBackend:
    """Implements the Backend protocol; each `process` call (one task) goes to the least busy replica.

    With a GpuPool, start() first takes `num_gpus` GPUs per replica (waiting while other models
    hold them) and close() gives them back, so models on a shared machine take turns.
    """

    def __init__(
        self,
        name: str,
        replicas: Sequence[Replica],
        *,
        num_gpus: int = 0,
        pool: GpuPool | None = None,
    ) -> None:
        self.name = name
        self._replicas = list(replicas)
        self._num_gpus = num_gpus
        self._pool = pool
        self._held: list[str] = []
        self._busy = [0] * len(self._replicas)
        self._info: ReplicaInfo | None = None
        self.devices: list[str | None] = []

    @property
    def identity(self) -> str:
        if self._info is None:
            raise RuntimeError(f"{self.name}: identity is known only after start()")
        return self._info.identity

    @property
    def chat(self) -> bool:
        if self._info is None:
            raise RuntimeError(f"{self.name}: chat is known only after start()")
        return self._info.chat

    async def start(self) -> None:
        groups: list[list[str] | None] = [None] * len(self._replicas)
        if self._pool is not None and self._num_gpus > 0:
            self._held = await self._pool.acquire(self._num_gpus * len(self._replicas))
            n = self._num_gpus
            groups = [self._held[i * n : (i + 1) * n] for i in range(len(self._replicas))]
        try:
            infos = await asyncio.gather(*(r.start(g) for r, g in zip(self._replicas, groups)))
        except BaseException:
            await self.close()
            raise
        identities = {info.identity for info in infos}
        if len(identities) != 1:
            await self.close()
            raise BackendError(f"the replicas of {self.name} disagree on what model they are: {sorted(identities)}")
        self._info = infos[0]
        self.name = self._info.name  # an API model's id may be discovered at start, as ApiBackend renames itself
        self.devices = [info.devices for info in infos]
        if len(infos) > 1 or infos[0].devices:
            log.info("%s: %d replica(s) on GPUs %s", self.name, len(infos), self.devices)

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        i = min(range(len(self._replicas)), key=lambda k: self._busy[k])
        self._busy[i] += len(requests)
        try:
            await self._replicas[i].process(requests, on_response)
        finally:
            self._busy[i] -= len(requests)

    async def close(self) -> None:
        results = await asyncio.gather(*(r.close() for r in self._replicas), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.debug("closing a replica of %s failed: %s", self.name, result)
        if self._pool is not None and self._held:
            self._pool.release(self._held)
            self._held = []
