"""Nothing sandboxed outlives Proctor (issue 20 §4): a real `proctor run` of HumanEval is killed
(SIGKILL, SIGTERM) while its programs run, and no launcher or program of it may remain."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import run_args
from shared_data import needs_shared_data

pytestmark = [needs_shared_data, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]


def _cmdlines() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    out[int(name)] = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
    return out


def _ours(marker: str, owner: int) -> list[str]:
    """The sandbox processes of this run: the marked `sleep`s its programs started, its launchers."""
    return [f"{pid}: {cmd[:120]}" for pid, cmd in _cmdlines().items()
            if marker in cmd or ("_launcher.py" in cmd and f'"owner": {owner}' in cmd)]


def _wait_for(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(("sig", "limit"), [(signal.SIGKILL, 64), (signal.SIGTERM, 2)],
                         ids=["SIGKILL, scoring in worker processes", "SIGTERM, scoring inline"])
def test_killing_proctor_kills_every_sandbox(tmp_path: Path, sig: int, limit: int) -> None:
    marker = f"97.{secrets.randbelow(10**9):09d}"  # a `sleep` argument no one else uses

    def coder(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        start = prompt.index("def ")  # the signature and docstring, as a chat model repeats them
        stub = prompt[prompt.rfind("\n", 0, start) + 1:] if "\n" in prompt[:start] else prompt[start:]
        return (f"```python\n{stub}    import subprocess, time\n"
                f"    subprocess.Popen(['/bin/sleep', '{marker}'])\n    time.sleep(60)\n```")

    with OpenAIServer(coder, model_ids=["m"]) as server:
        argv = [sys.executable, "-m", "proctor", *run_args(server.base_url, tmp_path, ["humaneval"], limit)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            started = _wait_for(lambda: any(marker in c for c in _cmdlines().values()), 90)
            assert started, "no sandboxed program started: " + (proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "")
            assert _ours(marker, proc.pid), "the run's launchers were not found"
            proc.send_signal(sig)
            proc.wait(30)
            # Well inside the programs' own 10 s timeout and 60 s sleep: they died with Proctor.
            assert _wait_for(lambda: not _ours(marker, proc.pid), 5), _ours(marker, proc.pid)
            time.sleep(1.0)  # nor does a worker process start new ones
            assert not _ours(marker, proc.pid)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
