"""Waiting for a `proctor serve` process to answer GET /health."""

from __future__ import annotations

import subprocess
import time
from typing import Any


class ServerNotReady(Exception):
    """The server exited, or did not answer /health in time."""


def wait_healthy(
    base_url: str, proc: subprocess.Popen[Any] | None = None, timeout_s: float = 120.0, interval_s: float = 0.1
) -> None:
    """Poll `base_url`/health (base_url without /v1) until it answers 200."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerNotReady(f"proctor serve exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise ServerNotReady(f"proctor serve did not answer {base_url}/health within {timeout_s:.0f}s")
