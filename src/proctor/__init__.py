"""Proctor: evaluate large language models on benchmarks."""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import proctor` (and `proctor --help`) stays fast.
    if name == "evaluate":
        from proctor.api import evaluate

        return evaluate
    raise AttributeError(f"module 'proctor' has no attribute {name!r}")
