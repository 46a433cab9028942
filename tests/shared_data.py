"""Where the real benchmark files are (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATASETS = Path(
    os.environ.get("PROCTOR_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)

needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATASETS / "ceval").is_dir(),
    reason=f"real benchmark files not found at {SHARED_DATASETS} (set PROCTOR_SHARED_DATASETS)",
)
