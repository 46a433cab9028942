"""Where Proctor keeps what it remembers between runs (responses, weight digests)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$PROCTOR_CACHE_DIR, else the user cache dir (e.g. ~/.cache/proctor)."""
    root = os.environ.get("PROCTOR_CACHE_DIR")
    if root:
        return Path(root)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("proctor"))
