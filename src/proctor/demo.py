"""`python -m proctor.demo` (`make demo`): the whole loop, offline, in a few minutes on a laptop CPU.

It builds a tiny local model once (cached in ./.proctor-demo/), serves it with
`proctor serve`, evaluates it through the OpenAI-compatible API and directly with
transformers on the bundled demo questions (C-Eval and MMLU layouts), prints both
summary tables and where the predictions are, then stops the server, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence


DEMO_DIR = Path(".proctor-demo")
MODEL_NAME = "proctor-tiny"
HEALTH_TIMEOUT_S = 180.0


class DemoError(Exception):
    """A demo step failed; the message says which and where to look."""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(text: str) -> None:
    _say()
    _say(f"==> {text}")


def _proctor_command() -> list[str]:
    """How to call the `proctor` command of this very installation."""
    return [sys.executable, "-m", "proctor"]


def _show(argv: Sequence[str]) -> str:
    """A command as the user would type it (`proctor ...`, relative paths)."""
    parts = list(argv)
    if parts[:3] == _proctor_command():
        parts = ["proctor", *parts[3:]]
    return " ".join(parts)


def build_model(root: Path) -> Path:
    """The tiny model, built on the first run and reused afterwards."""
    from proctor.tiny_model import build_tiny_model

    target = root / "tiny-model"
    started = time.monotonic()
    build_tiny_model(target)
    took = time.monotonic() - started
    _say(f"    model: {target} ({'built' if took > 0.5 else 'cached'}; random weights, a Llama of 2 layers)")
    return target


def start_server(model: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    argv = [*_proctor_command(), "serve", str(model), "--port", str(port),
            "--served-model-name", MODEL_NAME, "--log-level", "warning"]  # fmt: skip
    _say(f"    $ {_show(argv)}")
    log = log_path.open("wb")
    try:
        # Its own process group: a Ctrl-C in the terminal reaches the demo, which
        # then stops the server itself (and always does, see main()).
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()  # the child holds its own handle


def wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    from proctor.serve.health import ServerNotReady, wait_healthy as wait

    try:
        wait(base_url, proc, timeout_s=HEALTH_TIMEOUT_S, interval_s=0.2)
    except ServerNotReady as exc:
        raise DemoError(f"{exc}; see {log_path}:\n{_tail(log_path)}") from None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


def _run_dirs(work_dir: Path) -> set[Path]:
    return {p for p in work_dir.iterdir() if p.is_dir()} if work_dir.is_dir() else set()


def run_eval(label: str, model_args: list[str], work_dir: Path, extra: Sequence[str]) -> Path | None:
    """One `proctor run`; returns the new run folder (None if none was made)."""
    _step(f"Evaluating {label}")
    argv = [*_proctor_command(), "run", *model_args, "--datasets", "demo_gen",
            "-w", str(work_dir), *extra]  # fmt: skip
    _say(f"    $ {_show(argv)}")
    before = _run_dirs(work_dir)
    code = subprocess.call(argv)
    new = sorted(_run_dirs(work_dir) - before, key=lambda p: p.stat().st_mtime)
    if code != 0:
        raise DemoError(f"`{_show(argv)}` failed with exit code {code}")
    return new[-1] if new else None


def _describe_outputs(label: str, run_dir: Path | None) -> None:
    if run_dir is None:
        return
    _say(f"    {label}: {run_dir}")
    predictions = run_dir / "predictions"
    files = sorted(predictions.glob("*/*.jsonl")) if predictions.is_dir() else []
    if files:
        _say(f"      predictions: {files[0].parent}/ ({len(files)} files, one JSON line per question)")
    for name in ("summary/summary.txt", "report.html"):
        if (run_dir / name).exists():
            _say(f"      {name}: {run_dir / name}")


EPILOGUE = """\
About these scores: the demo model has random weights and was never trained, so it
scores near chance, about 25% on these four-option questions, or below: its garbled
text often holds no answer letter at all, which counts as wrong. With so few
questions, anything from 0% to 50% is normal. Both runs score the same model the same
way, so their tables should agree: that is the point of the demo, not the numbers.

Next steps:
  * a real model served as an API (yours, vLLM, LMDeploy, OpenAI, ...):
      proctor run --api-base http://HOST:PORT/v1 --datasets demo_gen
  * a local Hugging Face checkpoint or hub id, run with transformers:
      proctor run --hf-path Qwen/Qwen2.5-0.5B-Instruct --datasets demo_gen
  * serve a local model yourself, then evaluate it over HTTP:
      proctor serve /path/to/model --port 23333
      proctor run --api-base http://127.0.0.1:23333/v1 --datasets ceval_gen mmlu_gen
  * real benchmark data (C-Eval, CMMLU, MMLU in their original or OpenCompass layouts):
      proctor run --hf-path MODEL --datasets ceval_gen --data-dir /path/to/data
      (or `proctor data fetch ceval` to download it; `proctor list datasets` lists names)"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proctor.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(DEMO_DIR), help="cache and output folder (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="delete the folder first (rebuild everything)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions of each subject")
    parser.add_argument("--max-out-len", type=int, default=None, help="most tokens generated per answer")
    args = parser.parse_args(argv)

    root = Path(args.dir)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    work_dir = root / "outputs"
    extra = ["--limit", str(args.limit)] if args.limit else []
    extra += ["--max-out-len", str(args.max_out_len)] if args.max_out_len else []
    # The demo sends everything to 127.0.0.1; a proxy from the environment must not intercept it.
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

    from proctor.serve.health import free_port, stop_process

    _say("Proctor demo: evaluate a model on benchmark questions, fully offline.")
    server: subprocess.Popen[bytes] | None = None
    try:
        _step("Building a tiny local model (once; cached afterwards)")
        model = build_model(root)

        _step("Serving it as an OpenAI-compatible API with `proctor serve`")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = root / "serve.log"
        server = start_server(model, port, log_path)
        wait_healthy(server, base_url, log_path)
        _say(f"    ready at {base_url}/v1 (server log: {log_path})")

        api_run = run_eval("the served model over HTTP (proctor run --api-base)",
                           ["--api-base", f"{base_url}/v1"], work_dir, extra)
        hf_run = run_eval("the same model directly with transformers (proctor run --hf-path)",
                          ["--hf-path", str(model)], work_dir, extra)

        _step("Where the results are")
        _describe_outputs("over HTTP  ", api_run)
        _describe_outputs("direct (hf)", hf_run)
        _say()
        _say(EPILOGUE)
        return 0
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            stop_process(server)
            _say(f"\n(the demo server on port {port} is stopped)")


if __name__ == "__main__":
    sys.exit(main())
