"""API throughput benchmark: how close Proctor gets to a server's concurrency limit,
against lm-evaluation-harness's OpenAI-compatible client on the same rows, in the same run.

A fake OpenAI server runs in a separate process (bench/fake_openai_server.py:
uvicorn, fixed latency per request, always answers one letter). For each number
of questions N and concurrency C it measures

  (a) cli      the whole command `proctor run --api-base ... --datasets
               mmlu-professional_law --limit N --max-concurrency C ...` (wall time
               of the subprocess, startup included);
  (b) backend  ApiBackend.process over N generate requests (one user message each,
               max_tokens 8, stop at a blank line), in this process;
  (c) lmeval   the peer users would pick instead: lm-evaluation-harness's
               `local-chat-completions` model (lm_eval.models.openai_completions.
               LocalChatCompletion(base_url=<server>/v1/chat/completions,
               num_concurrent=C, max_retries=1), every other argument its default)
               and its `generate_until` over the same N questions, each made a chat
               by its own apply_chat_template as `--apply_chat_template` does, with
               {"until": ["\\n\\n"], "max_gen_toks": 8, "do_sample": False}. It runs in
               lm-eval's own venv (bench/.venv-lmeval, set up by hf_multiple_choice's
               ensure_lmeval, plus lm-eval's [api] extra; never a dependency of Proctor),
               one subprocess per measure, timed around the generate_until call only.
               max_retries=1: one attempt per request, so a failed request fails the run
               instead of hiding in a retry.

and prints the server-side rate while busy (first request arrival to last
response), the ideal rate C / latency, and their ratio; then, per (N, C), the
backend's and lm-eval's wall seconds and their ratio. Targets: ratio >= 0.90 (Proctor's
rows; lm-eval's are shown for reference); the cli with N=500, C=128 in <= 3 s; the
backend no slower than lm-eval's client on any (N, C), within LMEVAL_SLACK (5%: both
use aiohttp and reach the same server limit; a strict "faster" flips on noise). Exit 1
when one is missed. When lm-eval
cannot be set up or its run fails (or with --no-lmeval) one line says so and the
comparison is skipped.

    .venv/bin/python bench/api_throughput.py [--sizes 500 2000] [--concurrency 32 128] [--repeat 2]
"""

from __future__ import annotations

from typing import Sequence

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PROCTOR_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DEFAULT_LMEVAL_VENV = ROOT / "bench" / ".venv-lmeval"
RATIO_TARGET = 0.90
CLI_TARGET_S = 3.0
LMEVAL_SLACK = 0.05  # Proctor's backend may be this much slower than lm-eval's client
GEN_TOKENS = 8
STOP = ("\n\n",)  # lm-eval's default `until` for generation tasks (the few-shot delimiter)
LMEVAL_MAX_RETRIES = 1  # one attempt per request: a failure fails the run, never hides in a retry


def questions(n: int) -> list[str]:
    """The user message of each of the n requests (the backend and lm-eval send the same)."""
    return [f"Question {i}: which option? A, B, C or D" for i in range(n)]


@dataclass
class Row:
    mode: str
    n: int
    concurrency: int
    wall_s: float | None = None
    served: int = 0
    busy_s: float = 0.0
    busy_rps: float = 0.0
    limit_rps: float = 0.0
    # The best rate `served` requests can reach: whole rounds of C requests, the last one partial.
    ideal_rps: float = 0.0
    max_in_flight: int = 0
    load: float = 0.0  # 1-minute load average when the measure ended: other work on the machine
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.busy_rps / self.limit_rps if self.limit_rps else 0.0


class FakeServer:
    """bench/fake_openai_server.py in a subprocess."""

    def __init__(self, latency: float, answer: str, extra_args: Sequence[str] = ()) -> None:
        self.latency = latency
        self.answer = answer
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "fake_openai_server.py"),
                "--latency",
                str(latency),
                "--answer",
                answer,
                "--stdin-eof",
                *extra_args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.close()
            raise SystemExit(f"the fake server did not start (said {line!r})")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"

    def _call(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(
            self.root + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        self._call("/_reset", "POST")

    def stats(self) -> dict:
        return self._call("/_stats")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _fill(row: Row, stats: dict, latency: float) -> Row:
    row.served = stats["n_completed"]
    row.busy_s = stats["busy_s"]
    row.busy_rps = stats["busy_rps"]
    row.max_in_flight = stats["max_in_flight"]
    row.limit_rps = row.concurrency / latency
    if row.served:
        row.ideal_rps = row.served / (math.ceil(row.served / row.concurrency) * latency)
    row.load = os.getloadavg()[0]
    return row


def bench_backend(server: FakeServer, n: int, concurrency: int) -> Row:
    """(b) ApiBackend.process over n generate requests."""
    from proctor.config.schema import ApiModelConfig
    from proctor.core import Message, Request, Response
    from proctor.models.api import ApiBackend

    requests = [
        Request(kind="generate", messages=(Message("user", q),), max_tokens=GEN_TOKENS, stop=STOP)
        for q in questions(n)
    ]
    backend = ApiBackend(ApiModelConfig(api_base=server.base_url, max_concurrency=concurrency))
    failed = 0

    def on_response(index: int, response: Response) -> None:
        nonlocal failed
        failed += response.error is not None

    async def run() -> float:
        await backend.start()
        server.reset()  # the preflight GET is not part of the measure
        start = time.perf_counter()
        try:
            await backend.process(requests, on_response)
        finally:
            await backend.close()
        return time.perf_counter() - start

    row = Row("backend", n, concurrency)
    row.wall_s = asyncio.run(run())
    _fill(row, server.stats(), server.latency)
    if failed:
        row.note = f"{failed} failed"
    return row


# Runs inside the lm-eval venv: argv[1] the spec (JSON), argv[2] where the result goes.
LMEVAL_RUNNER = r"""
import json, sys, time
from importlib.metadata import version

spec = json.load(open(sys.argv[1], encoding="utf-8"))
from lm_eval.api.instance import Instance
from lm_eval.models.openai_completions import LocalChatCompletion

lm = LocalChatCompletion(base_url=spec["base_url"], model=spec["model"],
                         num_concurrent=spec["concurrency"], max_retries=spec["max_retries"])
# As `lm_eval --model local-chat-completions --apply_chat_template` builds a zero-shot
# request: the prompt as one user message, through the model's apply_chat_template
# (a JSON string of the messages that create_message decodes before sending).
instances = [
    Instance(request_type="generate_until", doc={}, idx=0,
             arguments=(lm.apply_chat_template([{"role": "user", "content": prompt}]),
                        {"until": list(spec["until"]), "max_gen_toks": spec["max_gen_toks"],
                         "do_sample": False}))
    for prompt in spec["prompts"]
]
started = time.perf_counter()
out = lm.generate_until(instances)
seconds = time.perf_counter() - started
json.dump({"version": version("lm_eval"), "seconds": seconds, "answers": list(out)},
          open(sys.argv[2], "w", encoding="utf-8"))
"""


class LmevalUnavailable(Exception):
    """lm-eval could not be set up, or its run failed: the comparison is skipped."""


def _tail(text: str, lines: int = 2) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "no output"


def ensure_lmeval_api(venv: Path) -> tuple[Path, str]:
    """The lm-eval venv's python with LocalChatCompletion usable: the venv of
    bench/hf_multiple_choice.py (created there on first use), plus lm-eval's [api]
    extra (aiohttp, tenacity, ...), installed at lm-eval's own version when missing."""
    sys.path.insert(0, str(ROOT / "bench"))
    from hf_multiple_choice import ensure_lmeval

    try:
        torch_version = importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        torch_version = ""
    if not torch_version and not (venv / "bin" / "python").exists():
        raise LmevalUnavailable("no torch in Proctor's venv to pin the lm-eval venv's torch to")
    python, how = ensure_lmeval(venv, torch_version)
    if python is None:
        raise LmevalUnavailable(how)
    check = [str(python), "-c", "import aiohttp, requests, tenacity, tqdm; "
             "import lm_eval.models.openai_completions; "
             "from importlib.metadata import version; print(version('lm_eval'))"]
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode == 0:
        return python, how
    version = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('lm_eval'))"],
        capture_output=True, text=True,
    ).stdout.strip()
    print(f"installing lm-eval[api] {version} in {venv} ...", file=sys.stderr, flush=True)
    spec = f"lm-eval[api]=={version}" if version else "lm-eval[api]"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", spec],
                             capture_output=True, text=True)
    if install.returncode != 0:
        raise LmevalUnavailable(f"`pip install {spec}` failed: {_tail(install.stderr or install.stdout)}")
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        raise LmevalUnavailable(f"lm-eval's API model does not import: {_tail(done.stderr)}")
    return python, f"{how}, [api] extra installed"


def bench_lmeval(server: FakeServer, n: int, concurrency: int, python: Path, info: dict) -> Row:
    """(c) lm-eval's LocalChatCompletion.generate_until over the same n questions.
    Raises LmevalUnavailable when the run fails; `info` gets lm-eval's version."""
    model = server._call("/v1/models")["data"][0]["id"]
    spec = {
        "base_url": f"{server.base_url}/chat/completions",
        "model": model,
        "concurrency": concurrency,
        "max_retries": LMEVAL_MAX_RETRIES,
        "prompts": questions(n),
        "until": list(STOP),
        "max_gen_toks": GEN_TOKENS,
    }
    row = Row("lmeval", n, concurrency)
    with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
        runner, spec_path, out = (Path(tmp) / name for name in ("runner.py", "spec.json", "out.json"))
        runner.write_text(LMEVAL_RUNNER, encoding="utf-8")
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_VERBOSITY="error")
        server.reset()
        try:
            done = subprocess.run([str(python), str(runner), str(spec_path), str(out)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=env, timeout=600)
        except subprocess.TimeoutExpired:
            raise LmevalUnavailable(f"the lm-eval run N={n} C={concurrency} timed out after 600 s")
        if done.returncode != 0 or not out.exists():
            raise LmevalUnavailable(
                f"the lm-eval run N={n} C={concurrency} failed (exit {done.returncode}): "
                f"{_tail(done.stderr)}"
            )
        result = json.loads(out.read_text(encoding="utf-8"))
    info["version"] = result["version"]
    row.wall_s = result["seconds"]
    _fill(row, server.stats(), server.latency)
    wrong = sum(answer != server.answer for answer in result["answers"])
    if len(result["answers"]) != n or wrong:
        row.note = f"{wrong} of {len(result['answers'])} answers not {server.answer!r}"
    elif row.served != n:
        row.note = f"server saw {row.served} requests"
    return row


def proctor_command() -> list[str]:
    script = Path(sys.executable).with_name("proctor")
    if script.exists():
        return [str(script)]
    found = shutil.which("proctor")
    return [found] if found else [sys.executable, "-m", "proctor.cli"]


def bench_cli(server: FakeServer, n: int, concurrency: int, data_dir: Path) -> Row:
    """(a) the whole `proctor run` command as a subprocess."""
    row = Row("cli", n, concurrency)
    with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
        env = dict(os.environ)
        # A fresh cache dir: responses cached by an earlier run must not answer for the server.
        env["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        env["PROCTOR_CACHE_DIR"] = str(Path(tmp) / "cache")
        env.pop("OPENAI_API_KEY", None)
        command = proctor_command() + [
            "run",
            "--api-base",
            server.base_url,
            "--datasets",
            "mmlu-professional_law",
            "--limit",
            str(n),
            "--max-concurrency",
            str(concurrency),
            "--data-dir",
            str(data_dir),
            "-w",
            str(Path(tmp) / "outputs"),
        ]
        server.reset()
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        except subprocess.TimeoutExpired:
            row.note = "timed out after 600 s"
            return _fill(row, server.stats(), server.latency)
        row.wall_s = time.perf_counter() - start
    _fill(row, server.stats(), server.latency)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        row.note = f"exit {done.returncode}: {lines[-1][:90]}"
    elif row.served < n:
        row.note = f"server saw {row.served} requests (dataset smaller than N, or cached)"
    return row


def _best(repeat: int, measure: Callable[[], Row]) -> Row:
    """The fastest of `repeat` runs (the others were slowed by other work), logged as it goes."""
    rows = []
    for _ in range(max(1, repeat)):
        row = measure()
        wall = "n/a" if row.wall_s is None else f"{row.wall_s:.2f} s"
        print(
            f"{row.mode:<8} N={row.n} C={row.concurrency}: {wall}, {row.busy_rps:.0f} req/s busy, "
            f"load {row.load:.1f} {row.note}",
            file=sys.stderr,
        )
        rows.append(row)
    return max(rows, key=lambda r: (r.wall_s is not None, r.busy_rps))


def print_table(rows: list[Row], latency: float) -> list[str]:
    """Print the table; return one line per missed target (the exit code depends on them)."""
    missed: list[str] = []
    header = (
        f"{'mode':<8} {'N':>5} {'C':>4} {'wall s':>7} {'served':>6} {'busy s':>7} "
        f"{'req/s busy':>10} {'limit':>6} {'ratio':>6} {'ideal':>6} {'max fl':>6} {'load':>5}  note"
    )
    print(
        f"\nfake server latency {latency * 1000:.0f} ms; limit = C / latency; ratio = req/s busy "
        f"/ limit;\nideal = the best ratio whole rounds of C requests allow (the last round is "
        f"partial);\ntargets (Proctor's rows): ratio >= {RATIO_TARGET:.0%}, cli N=500 C=128 <= {CLI_TARGET_S:g} s; "
        f"{os.cpu_count()} CPUs; load = 1-min load average (all work on the machine)"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        wall = f"{r.wall_s:7.2f}" if r.wall_s is not None else f"{'n/a':>7}"
        flags = []
        if r.mode == "lmeval":  # the peer, for reference: Proctor's targets are not its own
            flags.append("no target (peer)")
        else:
            if r.served and r.ratio < RATIO_TARGET:
                flags.append("BELOW TARGET")
                missed.append(f"{r.mode} N={r.n} C={r.concurrency}: ratio {r.ratio:.1%} < {RATIO_TARGET:.0%}")
            if not r.served or r.note:
                missed.append(f"{r.mode} N={r.n} C={r.concurrency}: {r.note or 'nothing served'}")
            if r.mode == "cli" and r.n == 500 and r.concurrency == 128 and r.wall_s is not None:
                ok = r.wall_s <= CLI_TARGET_S and not r.note
                flags.append("wall OK" if ok else "wall ABOVE TARGET")
                if not ok:
                    missed.append(f"cli N=500 C=128: {r.wall_s:.2f} s > {CLI_TARGET_S:g} s")
        note = "; ".join(x for x in [r.note, *flags] if x)
        print(
            f"{r.mode:<8} {r.n:>5} {r.concurrency:>4} {wall} {r.served:>6} {r.busy_s:>7.2f} "
            f"{r.busy_rps:>10.1f} {r.limit_rps:>6.0f} {r.ratio:>6.1%} "
            f"{r.ideal_rps / r.limit_rps if r.limit_rps else 0:>6.1%} {r.max_in_flight:>6} "
            f"{r.load:>5.1f}  {note}"
        )
    return missed


def print_comparison(rows: list[Row], version: str) -> list[str]:
    """Proctor's backend vs lm-eval per (N, C); return one line per cell where lm-eval was
    not slower (the exit code depends on them)."""
    missed: list[str] = []
    backend = {(r.n, r.concurrency): r for r in rows if r.mode == "backend"}
    lmeval = {(r.n, r.concurrency): r for r in rows if r.mode == "lmeval"}
    print(
        f"\nProctor's backend vs lm-evaluation-harness {version} (LocalChatCompletion, "
        f"num_concurrent=C, max_retries={LMEVAL_MAX_RETRIES}), the same N chat requests; "
        f"wall s of the call;\ntarget: the backend at most {LMEVAL_SLACK:.0%} slower than lm-eval on every (N, C)"
    )
    header = f"{'N':>5} {'C':>4} {'Proctor s':>9} {'lm-eval s':>9} {'lm-eval/Proctor':>15}  result"
    print(header)
    print("-" * len(header))
    for key in sorted(lmeval):
        mine, theirs = backend.get(key), lmeval[key]
        n, c = key
        if mine is None or mine.wall_s is None or theirs.wall_s is None:
            print(f"{n:>5} {c:>4} {'n/a':>9} {'n/a':>9} {'n/a':>15}  no backend row to compare")
            continue
        ok = mine.wall_s <= theirs.wall_s * (1 + LMEVAL_SLACK)
        ratio = theirs.wall_s / mine.wall_s
        verdict = "Proctor faster" if mine.wall_s < theirs.wall_s else "tie" if ok else "Proctor SLOWER"
        print(f"{n:>5} {c:>4} {mine.wall_s:>9.2f} {theirs.wall_s:>9.2f} {ratio:>14.2f}x  {verdict}")
        if not ok:
            missed.append(
                f"backend N={n} C={c}: {mine.wall_s:.2f} s, more than {LMEVAL_SLACK:.0%} slower "
                f"than lm-eval's {theirs.wall_s:.2f} s"
            )
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-backend", action="store_true")
    parser.add_argument("--no-lmeval", action="store_true",
                        help="skip lm-evaluation-harness (the comparison with the peer)")
    parser.add_argument("--lmeval-venv", type=Path, default=DEFAULT_LMEVAL_VENV)
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the fastest is kept")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    lmeval_python: Path | None = None
    lmeval_why = "--no-lmeval"
    lmeval_info: dict = {}
    if not args.no_lmeval:
        try:
            lmeval_python, lmeval_why = ensure_lmeval_api(args.lmeval_venv)
        except LmevalUnavailable as exc:
            lmeval_why = str(exc)

    server = FakeServer(args.latency, "A")
    rows: list[Row] = []
    try:
        for n in args.sizes:
            for c in args.concurrency:
                if not args.skip_backend:
                    rows.append(_best(args.repeat, partial(bench_backend, server, n, c)))
                if lmeval_python is not None:
                    measure = partial(bench_lmeval, server, n, c, lmeval_python, lmeval_info)
                    try:
                        rows.append(_best(args.repeat, measure))
                    except LmevalUnavailable as exc:
                        lmeval_python, lmeval_why = None, str(exc)
                        rows = [r for r in rows if r.mode != "lmeval"]
                if not args.skip_cli:
                    cli = partial(bench_cli, server, n, c, args.data_dir)
                    rows.append(_best(args.repeat, cli))
    finally:
        server.close()
    missed = print_table(rows, args.latency)
    if lmeval_python is None:
        print(f"\nlm-evaluation-harness: not compared ({lmeval_why})")
    else:
        missed += print_comparison(rows, lmeval_info.get("version", "?"))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"ratio": r.ratio} for r in rows], indent=2))
    for line in missed:
        print(f"target missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
