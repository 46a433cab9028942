"""The data side of a benchmark: readers by file format, the field map that turns rows into
Samples, the data-root search, and downloads from the hub.

Which benchmark a file belongs to is the business of `proctor.tasks`; this package only
needs a `DataSource` (layouts, format, subsets, splits) and a `FieldMap`.
"""

from __future__ import annotations

from pathlib import Path

from proctor.datasets.fetch import fetch
from proctor.datasets.fields import FieldMap, row_choices, row_to_sample
from proctor.datasets.load import data_files, load_samples, read_file_samples
from proctor.datasets.locate import data_roots, default_data_root
from proctor.datasets.readers import FORMATS, format_of, read_rows
from proctor.datasets.source import DataSource, HubArchive, JoinSpec, SourceSpec

# Original questions written for Proctor (not benchmark items), in the C-Eval
# and MMLU file layouts: ceval computer_network / high_school_physics (dev, val),
# mmlu astronomy / computer_security (dev, test). Pass it as `data_dir`.
DEMO_DATA_DIR = Path(__file__).parent / "demo_data"

__all__ = [
    "DEMO_DATA_DIR",
    "FORMATS",
    "DataSource",
    "FieldMap",
    "HubArchive",
    "JoinSpec",
    "SourceSpec",
    "data_files",
    "data_roots",
    "default_data_root",
    "fetch",
    "format_of",
    "load_samples",
    "read_file_samples",
    "read_rows",
    "row_choices",
    "row_to_sample",
]
