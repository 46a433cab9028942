"""`python -m proctor.demo`: the offline end-to-end demo (`make demo`), on one question per subject."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("fastapi")


def test_demo_serves_evaluates_twice_and_stops_the_server(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "proctor.demo", "--limit", "1", "--max-out-len", "8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Both evaluations ran, against the served model and directly.
    assert re.search(r"proctor run --api-base http://127\.0\.0\.1:\d+/v1 --datasets demo_gen", out)
    assert "proctor run --hf-path .proctor-demo/tiny-model --datasets demo_gen" in out
    runs = sorted((tmp_path / ".proctor-demo" / "outputs").iterdir())
    assert len(runs) == 2
    for run, model in zip(runs, ["proctor-tiny", "tiny-model"]):
        predictions = sorted((run / "predictions" / model).glob("*.jsonl"))
        assert len(predictions) == 4  # C-Eval and MMLU demo subjects
        assert all(len(p.read_text(encoding="utf-8").splitlines()) == 1 for p in predictions)
        assert str(run.relative_to(tmp_path)) in out
    assert "--data-dir" in out and "--hf-path" in out
    # The served model and the same checkpoint run directly give the same answers and scores.
    served, direct = runs
    for name in ("ceval-computer_network", "mmlu-astronomy"):
        a = json.loads((served / "results" / "proctor-tiny" / f"{name}.json").read_text(encoding="utf-8"))
        b = json.loads((direct / "results" / "tiny-model" / f"{name}.json").read_text(encoding="utf-8"))
        assert (a["value"], a["n"]) == (b["value"], b["n"])
        outputs = [json.loads((run / "predictions" / model / f"{name}.jsonl").read_text(encoding="utf-8"))["output"]
                   for run, model in ((served, "proctor-tiny"), (direct, "tiny-model"))]
        assert outputs[0] == outputs[1]

    # The server is gone: its port no longer accepts connections.
    port = int(re.search(r"--port (\d+)", out).group(1))  # type: ignore[union-attr]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert "is stopped" in out
