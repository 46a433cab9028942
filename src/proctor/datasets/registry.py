"""The built-in benchmark families, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from proctor.datasets import ceval, cmmlu, mmlu
from proctor.datasets.benchmark import Benchmark, unknown_name_error
from proctor.datasets.family import Family

_FAMILIES: Mapping[str, Family] = MappingProxyType(
    {f.benchmark.name: f for f in (ceval.FAMILY, cmmlu.FAMILY, mmlu.FAMILY)}
)

BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType(
    {name: f.benchmark for name, f in _FAMILIES.items()}
)


def _normalise(name: str) -> str:
    # "C-Eval", "CEVAL" and "ceval" all mean the same benchmark.
    return name.strip().lower().replace("-", "").replace("_", "")


def get_family(benchmark: str | Benchmark) -> Family:
    """The Family of a benchmark name (or Benchmark); ConfigError with suggestions if unknown."""
    name = benchmark.name if isinstance(benchmark, Benchmark) else benchmark
    family = _FAMILIES.get(_normalise(name))
    if family is None:
        raise unknown_name_error("benchmark", name, _FAMILIES)
    return family


def get_benchmark(name: str) -> Benchmark:
    """The Benchmark called `name` ("ceval", "cmmlu", "mmlu"); ConfigError with suggestions if unknown."""
    return get_family(name).benchmark
