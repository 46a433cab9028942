"""`pip install proctor` (the core, no extras) runs an API evaluation in a fresh virtual
environment: no torch, no transformers, no Math-Verify; only what pyproject's core names.

The environment is built once per version of the sources (cached under .pytest_cache), so
a repeated run costs seconds; a fresh checkout (CI) pays one real `pip install` (~20 s).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from shared_data import SHARED_DATASETS, needs_shared_data

pytestmark = [pytest.mark.install, needs_shared_data, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("torch", "transformers", "math_verify", "fastapi", "ray", "pyarrow")


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([ROOT / "pyproject.toml", *(ROOT / "src").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout's PYTHONPATH or the test venv: only the install counts."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def core_venv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("proctor-core-venv") if cache is not None else tmp_path_factory.mktemp("core")
    venv = root / _sources_digest()
    if not (venv / "installed").is_file():
        for old in root.iterdir():  # one environment at a time: older sources' go
            shutil.rmtree(old, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
                              capture_output=True, text=True, timeout=500, env=_clean_env())
        assert done.returncode == 0, done.stderr[-3000:]
        (venv / "installed").write_text("ok")
    return venv


def test_the_core_install_runs_an_api_evaluation(core_venv: Path, tmp_path: Path) -> None:
    python = core_venv / "bin" / "python"
    probe = "import importlib.util as u, proctor; print(proctor.__file__); print([m for m in %r if u.find_spec(m)])"
    where, present = subprocess.run([str(python), "-c", probe % (EXTRAS,)], capture_output=True, text=True,
                                    check=True, env=_clean_env(), cwd=tmp_path).stdout.splitlines()
    assert str(core_venv) in where and present == "[]"  # the installed copy, and no extra in it

    proctor = str(core_venv / "bin" / "proctor")
    env = _clean_env(PROCTOR_CACHE_DIR=str(tmp_path / "cache"), OPENAI_API_KEY="")
    common = ["--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out")]
    with OpenAIServer(lambda body: "答案：B") as server:
        done = subprocess.run([proctor, "run", "--api-base", server.base_url, "--datasets", "ceval_gen",
                               "--limit", "1", "--fewshot", "0", *common],
                              capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "ceval" in done.stdout and len(server.post_requests()) == 52
        # The console shows the headline; the full table (every subject) is in summary/.
        summary = next((tmp_path / "out").glob("*/summary/summary.txt")).read_text(encoding="utf-8")
        assert "ceval-computer_network" in summary
        # A dataset whose scorer needs an extra: one line naming it, before anything is sent.
        server.app.reset()
        math = subprocess.run([proctor, "run", "--api-base", server.base_url, "--datasets", "math500",
                               "--limit", "1", *common], capture_output=True, text=True, timeout=120, env=env,
                              cwd=tmp_path)
        assert math.returncode == 2 and server.post_requests() == []
        assert math.stderr.strip().splitlines() == [
            "error: dataset math500: the math_equiv scorer needs Math-Verify: pip install 'proctor[math]'"]

    # `proctor list | head`: the reader goes away; no BrokenPipeError traceback.
    listing = subprocess.Popen([proctor, "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=tmp_path)
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()  # closed before the first write: every write meets a broken pipe
    err = listing.stderr.read().decode()
    assert listing.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
