"""Where the real benchmark files are (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _find_shared_datasets() -> Path:
    """$PROCTOR_SHARED_DATASETS, else the nearest `shared/datasets` beside the checkout or above it."""
    if os.environ.get("PROCTOR_SHARED_DATASETS"):
        return Path(os.environ["PROCTOR_SHARED_DATASETS"])
    here = Path(__file__).resolve()
    candidates = [parent / "shared" / "datasets" for parent in here.parents]
    candidates.append(Path("/work/shared/datasets"))
    return next((c for c in candidates if (c / "ceval").is_dir()), candidates[2])


SHARED_DATASETS = _find_shared_datasets()

needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATASETS / "ceval").is_dir(),
    reason=f"real benchmark files not found at {SHARED_DATASETS} (set PROCTOR_SHARED_DATASETS)",
)
