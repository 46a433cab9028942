"""The Ray runner (`--runner ray`, extra `proctor[ray]`): models as Ray actors, the same tasks and records.

Each model runs as Ray actors (one per replica) that ask the cluster for the model's CPUs and
GPUs; each planned task is one streaming call to an actor, which yields the responses as they
come. This process stays the only writer of the run folder and of the response cache, so the
layout, resume and cache behave exactly as with the local runner, and worker nodes need no
shared disk. API models get one actor: all their tasks share its concurrency limit and rate
limiter. A local model gets one actor per free GPU set (loaded once per actor), as many as
it has tasks at most; Ray sets each actor's CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Sequence

from proctor.config.schema import ApiModelConfig, RunConfig, model_abbr
from proctor.core import Request
from proctor.engine.gpus import replicas_for
from proctor.engine.infer import InferenceOutcome, ModelEntry, num_gpus_of, run_inference
from proctor.engine.plan import make_plan
from proctor.engine.prepare import PreparedDataset
from proctor.engine.replicas import ReplicaInfo, ReplicatedBackend
from proctor.engine.rundir import RunDir
from proctor.errors import BackendError, ConfigError, MissingExtraError, ProctorError
from proctor.models.base import OnResponse

log = logging.getLogger("proctor.engine")

API_ACTOR_CPUS = 0.1  # an API actor waits on the network; it must not keep a CPU from local models
LOCAL_ACTOR_CPUS = 1.0


class ModelActor:
    """The body of a Ray actor serving one model replica (wrapped by ray.remote lazily)."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self._backend: Any = None

    async def start(self) -> tuple[str, str, bool, str | None]:
        from proctor.models import create_backend

        self._backend = create_backend(self._config)
        await self._backend.start()
        return self._backend.name, self._backend.identity, self._backend.chat, os.environ.get("CUDA_VISIBLE_DEVICES")

    async def process(self, requests: list[Request]) -> Any:
        """A streaming generator: batches of (index, response) as they complete."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

        def on_response(i: int, response: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (i, response))

        work = asyncio.ensure_future(self._backend.process(requests, on_response))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    await asyncio.sleep(0)  # let callbacks the backend queued last run
                    if queue.empty():
                        work.result()  # raises the backend's error, if any
                        return
                    continue
                batch = [getter.result()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                yield batch
        finally:
            if not work.done():
                work.cancel()

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()


class RayReplica:
    """The driver's handle on one actor."""

    def __init__(self, ray: Any, actor_class: Any, config: Any, *, num_cpus: float, num_gpus: float) -> None:
        self._ray = ray
        self._actor_class = actor_class
        self._config = config
        self._options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self._actor: Any = None

    async def start(self, devices: Sequence[str] | None) -> ReplicaInfo:
        self._actor = self._actor_class.options(**self._options).remote(self._config)
        try:
            name, identity, chat, seen = await self._actor.start.remote()
        except self._ray.exceptions.RayError as exc:
            raise _unwrap(exc) from None
        return ReplicaInfo(name, identity, chat, seen)

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        try:
            async for ref in self._actor.process.remote(list(requests)):
                for index, response in await ref:
                    on_response(index, response)
        except self._ray.exceptions.RayError as exc:
            raise _unwrap(exc) from None

    async def close(self) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        try:
            await asyncio.wait_for(actor.close.remote(), 30)
        except Exception as exc:
            log.debug("closing an actor failed: %s", exc)
        self._ray.kill(actor)


def _unwrap(exc: BaseException) -> BaseException:
    """The error raised inside an actor, as this process would have raised it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ProctorError):
        return cause
    if cause is not None:
        return BackendError(f"a Ray actor failed: {type(cause).__name__}: {cause}")
    return BackendError(f"Ray failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _check_reachable(address: str | None) -> None:
    """Refuse an address nothing answers at in one line: ray.init would retry for minutes."""
    if not address or address == "auto" or "://" in address:
        return  # "auto", ray://: ray resolves or reports these itself
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # malformed: ray.init says so at once
    import socket

    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return
    except OSError as exc:
        reason = "host name not found" if isinstance(exc, socket.gaierror) else (exc.strerror or str(exc)).lower()
        raise ConfigError(
            f"--ray-address {address}: nothing answers there ({reason}); start the cluster (`ray start --head`) "
            "or leave --ray-address out to start a local one"
        ) from None


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray") from None
    return ray


def preflight(config: RunConfig) -> None:
    import_ray()


def _api_config_with_key(model: ApiModelConfig) -> ApiModelConfig:
    """The key travels inside the config (a SecretStr) because actors on other nodes lack our environment."""
    if model.api_key is not None:
        return model
    from pydantic import SecretStr

    value = os.environ.get(model.api_key_env or "", "")
    return model.model_copy(update={"api_key": SecretStr(value)}) if value else model


def ray_gpu_request(model: Any, cluster_gpus: float) -> int:
    """GPUs an actor of `model` asks Ray for; a clear error when the cluster cannot give them."""
    name = model_abbr(model)
    need = num_gpus_of(model)
    device = getattr(model, "device", None)
    if need == 0 or (isinstance(device, str) and device.startswith("cpu")):
        return 0
    if cluster_gpus <= 0:
        if isinstance(device, str) and device.startswith("cuda"):
            raise ConfigError(f"model {name} is set to device={device!r} but the Ray cluster has no GPUs")
        log.warning("the Ray cluster has no GPUs: model %s runs on CPU", name)
        return 0
    if need > cluster_gpus:
        raise ConfigError(
            f"model {name} asks for num_gpus={need} but the Ray cluster has {cluster_gpus:g}; lower num_gpus"
        )
    return need


def ray_entries(ray: Any, config: RunConfig, tasks_per_model: int) -> list[ModelEntry]:
    actor_class = ray.remote(ModelActor)
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    entries = []
    for model in config.models:
        name = model_abbr(model)
        if isinstance(model, ApiModelConfig):
            replicas = [RayReplica(ray, actor_class, _api_config_with_key(model), num_cpus=API_ACTOR_CPUS, num_gpus=0)]
            entries.append(ModelEntry(model, ReplicatedBackend(name, replicas), eager=True, name=name))
            continue
        need = ray_gpu_request(model, cluster_gpus)
        n = replicas_for(need, int(cluster_gpus), tasks_per_model, config.max_num_workers)
        replicas = [RayReplica(ray, actor_class, model, num_cpus=LOCAL_ACTOR_CPUS, num_gpus=need) for _ in range(n)]
        entries.append(ModelEntry(model, ReplicatedBackend(name, replicas), eager=False, name=name))
    return entries


async def infer_on_ray(
    config: RunConfig,
    run: RunDir,
    prepared: Sequence[PreparedDataset],
    *,
    argv: Sequence[str] | None,
    console: Any = None,
) -> InferenceOutcome:
    """The inference stage on Ray: at `config.ray_address`, the Ray instance this process already
    joined, or a new local one (shut down at the end)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _check_reachable(config.ray_address)
        try:
            ray.init(
                address=config.ray_address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=config.debug,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = config.ray_address or "a new local instance"
            raise ConfigError(f"--runner ray: cannot start or join Ray at {where}: {exc}") from None
    try:
        sizes = [(p.config.abbr, p.plan_size) for p in prepared]
        tasks_per_model = len(make_plan(["m"], sizes, config.max_partition_size))
        entries = ray_entries(ray, config, tasks_per_model)
        return await run_inference(config, run, prepared, entries, argv=argv, console=console, runner="ray")
    finally:
        if started_here:
            ray.shutdown()
