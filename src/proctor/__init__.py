"""Proctor: evaluate large language models on benchmarks."""

__version__ = "0.1.0"

