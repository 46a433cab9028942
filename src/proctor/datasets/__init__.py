"""Benchmark metadata and loaders: C-Eval, CMMLU and MMLU, from local files or the hub.

Metadata (`BENCHMARKS`, `get_benchmark`) needs no data on disk. `load_samples`
reads the official CSV layouts or OpenCompass's data bundle from the first data
root that has the file: `data_dir`, $PROCTOR_DATA, ./data, the user cache dir
(where `fetch` downloads to).
"""

from __future__ import annotations

from pathlib import Path

from proctor.datasets.benchmark import Benchmark, Subject
from proctor.datasets.fetch import fetch
from proctor.datasets.load import data_files, load_samples
from proctor.datasets.locate import data_roots, default_data_root
from proctor.datasets.registry import BENCHMARKS, get_benchmark

# Original questions written for Proctor (not benchmark items), in the C-Eval
# and MMLU file layouts: ceval computer_network / high_school_physics (dev, val),
# mmlu astronomy / computer_security (dev, test). Pass it as `data_dir`.
DEMO_DATA_DIR = Path(__file__).parent / "demo_data"

__all__ = [
    "BENCHMARKS",
    "DEMO_DATA_DIR",
    "Benchmark",
    "Subject",
    "data_files",
    "data_roots",
    "default_data_root",
    "fetch",
    "get_benchmark",
    "load_samples",
]
