"""The local runner: every model's backend in this process, or local models in GPU-pinned workers.

API models always live in this process (one backend per model, shared by all its tasks, so
its concurrency limit and rate limiter hold across datasets). A local model lives in this
process too, unless the machine has GPUs to hand out: with several GPUs, or several local
models taking turns on one, each model gets worker processes pinned to its own GPUs
(CUDA_VISIBLE_DEVICES), one replica per free GPU set, each loading the model once.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from proctor.config.schema import ApiModelConfig, RunConfig, model_abbr
from proctor.engine.gpus import GpuPool, check_fits, replicas_for, visible_gpus
from proctor.engine.infer import InferenceOutcome, ModelEntry, num_gpus_of, run_inference
from proctor.engine.plan import make_plan
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir

log = logging.getLogger("proctor.engine")


def uses_gpu_workers(config: RunConfig, gpus: Sequence[str]) -> bool:
    """Whether local models go to pinned worker processes (not with --debug: one process)."""
    wanting = [m for m in config.models if num_gpus_of(m) > 0 and not _on_cpu(m)]
    return bool(not config.debug and gpus and wanting and (len(gpus) > 1 or len(wanting) > 1))


def _on_cpu(model: Any) -> bool:
    device = getattr(model, "device", None)
    return isinstance(device, str) and device.startswith("cpu")


def local_entries(config: RunConfig, tasks_per_model: int) -> list[ModelEntry]:
    from proctor.models import create_backend

    local = [m for m in config.models if not isinstance(m, ApiModelConfig)]
    gpus = visible_gpus() if local else []
    pool = GpuPool(gpus) if uses_gpu_workers(config, gpus) else None
    entries = []
    for model in config.models:
        name = model_abbr(model)
        need = num_gpus_of(model)
        if pool is not None and need > 0 and not _on_cpu(model):
            from proctor.engine.procworker import ProcessReplica
            from proctor.engine.replicas import ReplicatedBackend

            check_fits(name, need, len(gpus))
            n = replicas_for(need, len(gpus), tasks_per_model, config.max_num_workers)
            replicas = [ProcessReplica(model, f"{name}#{i}") for i in range(n)]
            backend: Any = ReplicatedBackend(name, replicas, num_gpus=need, pool=pool)
        else:
            backend = create_backend(model)
        entries.append(ModelEntry(model, backend, eager=isinstance(model, ApiModelConfig), name=name))
    return entries


async def infer_local(
    config: RunConfig, run: RunDir, prepared: Sequence[PreparedDataset], *, argv: Sequence[str] | None, console: Any
) -> InferenceOutcome:
    """The inference stage in this process (and its GPU workers)."""
    sizes = [(p.config.abbr, p.plan_size) for p in prepared]
    tasks_per_model = len(make_plan(["m"], sizes, config.max_partition_size))
    entries = local_entries(config, tasks_per_model)
    return await run_inference(config, run, prepared, entries, argv=argv, console=console, runner="local")
