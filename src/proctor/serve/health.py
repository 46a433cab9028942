"""Driving a `proctor serve` process from outside: a free port, waiting for GET /health, stopping it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from typing import Any


class ServerNotReady(Exception):
    """The server exited, or did not answer /health in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port of `host` that was free a moment ago (for a server in another process)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    """SIGTERM (the server finishes in-flight requests and closes the model), then kill after `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
