"""The runners `--runner` names: where the inference stage's work runs. One entry per runner.

Each runner module has `infer(config, run, prepared, *, argv, console) -> InferenceOutcome`
and may have `preflight(config)`, called before a run folder is made, so that a missing extra
or command fails without leaving an empty run behind.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from proctor.errors import ConfigError


@dataclass(frozen=True)
class RunnerSpec:
    name: str
    module: str  # the module holding the runner's functions
    infer: str  # its inference stage
    preflight: str | None = None  # its early check
    help: str = ""

    def _function(self, name: str) -> Any:
        return getattr(importlib.import_module(self.module), name)

    def check(self, config: Any) -> None:
        if self.preflight is not None:
            self._function(self.preflight)(config)

    async def run(self, config: Any, run: Any, prepared: Any, *, argv: Any, console: Any) -> Any:
        return await self._function(self.infer)(config, run, prepared, argv=argv, console=console)


RUNNERS: dict[str, RunnerSpec] = {
    spec.name: spec
    for spec in (
        RunnerSpec("local", "proctor.engine.local_runner", "infer_local",
                   help="this machine (GPU workers when it has several GPUs)"),
        RunnerSpec("ray", "proctor.engine.ray_runner", "infer_on_ray", "preflight", help="needs proctor[ray]"),
        RunnerSpec("slurm", "proctor.engine.slurm_runner", "infer_on_slurm", "preflight",
                   help="one sbatch job per (model, shard)"),
    )
}


def get_runner(name: str) -> RunnerSpec:
    try:
        return RUNNERS[name]
    except KeyError:
        raise ConfigError(f"--runner {name}: no such runner (choose from {', '.join(RUNNERS)})") from None
