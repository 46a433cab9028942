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

  (d) full     all of MMLU + CMMLU test (25,661 questions): `proctor run --datasets
               mmlu_gen cmmlu_gen --max-concurrency 256` end to end, at about 1k, 10k
               (--limit 8 / 81 per subject) and all 25,661 questions, --full-repeat times
               each: the server's rate from the first request to the last answer against
               the limit 256 / latency (target >= 90% on the 25k run, the best of the
               repeats; the spread is printed), the seconds before the first request and
               after the last answer, the process's peak RSS (wait4) and how it grows with
               the questions, and the CPU the client and the fake server used in that window
               (they share this machine: a busy box shows in those columns and the load);

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
    .venv/bin/python bench/api_throughput.py --only-full [--full 25k] [--full-repeat 3]
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
import threading
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


# The whole-benchmark case: all of MMLU + CMMLU test, `proctor run` end to end.
FULL_DATASETS = ("mmlu_gen", "cmmlu_gen")
FULL_CONCURRENCY = 256
# --limit per subject (124 subjects) for about 1k and 10k questions; None: all 25,661.
FULL_LIMITS: dict[str, int | None] = {"1k": 8, "10k": 81, "25k": None}
FULL_TARGET_SIZE = "25k"  # the target is the whole benchmark's; the smaller runs show memory


@dataclass
class FullRow:
    """One `proctor run` of MMLU + CMMLU, timed by the server and watched from outside."""

    size: str
    questions: int = 0
    served: int = 0
    busy_s: float = 0.0
    busy_rps: float = 0.0
    limit_rps: float = 0.0
    ideal_rps: float = 0.0
    before_s: float = 0.0  # process start -> the first request the server saw
    after_s: float = 0.0  # the last answer -> process exit (scoring, summary, report)
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    client_cpu_ms: float = 0.0  # the proctor process's CPU per question between first request and last answer
    client_busy: float = 0.0  # ... as a share of one core
    server_busy: float = 0.0  # the fake server's CPU over the same window, as a share of one core
    server_latency_ms: float = 0.0  # the server's mean arrival -> answer time (the latency plus its own lag)
    server_in_flight: float = 0.0  # requests the server held on average (the client keeps 256 in flight)
    load: float = 0.0
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.busy_rps / self.limit_rps if self.limit_rps else 0.0


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (Linux /proc), None when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """CPU seconds at monotonic time `when`, interpolated between samples."""
    if not samples:
        return 0.0
    before = [s for s in samples if s[0] <= when]
    after = [s for s in samples if s[0] >= when]
    if not before:
        return samples[0][1]
    if not after:
        return samples[-1][1]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def bench_full(server: FakeServer, size: str, data_dir: Path) -> FullRow:
    """`proctor run --datasets mmlu_gen cmmlu_gen --max-concurrency 256` as a subprocess:
    the server's busy rate, the time before the first request and after the last answer,
    the process's peak RSS (wait4), and the CPU the client and the server used meanwhile."""
    row = FullRow(size)
    limit = FULL_LIMITS[size]
    with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
        env = dict(os.environ)
        env["XDG_CACHE_HOME"] = env["PROCTOR_CACHE_DIR"] = str(Path(tmp) / "cache")
        env.pop("OPENAI_API_KEY", None)
        command = proctor_command() + [
            "run", "--api-base", server.base_url, "--datasets", *FULL_DATASETS,
            "--max-concurrency", str(FULL_CONCURRENCY), "--data-dir", str(data_dir),
            "-w", str(Path(tmp) / "outputs"),
        ] + (["--limit", str(limit)] if limit is not None else [])
        server.reset()
        client: list[tuple[float, float]] = []
        served: list[tuple[float, float]] = []
        start = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        err_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        status, usage = 0, None
        while True:  # wait4 gives this child's own peak RSS; /proc its CPU as it goes
            now = time.monotonic()
            for pid, samples in ((proc.pid, client), (server.proc.pid, served)):
                cpu = _cpu_seconds(pid)
                if cpu is not None:
                    samples.append((now, cpu))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if now - start > 900:
                proc.kill()
                row.note = "timed out after 900 s"
            time.sleep(0.05)
        row.wall_s = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join(timeout=10)
        stats = server.stats()
    row.peak_rss_mb = usage.ru_maxrss / 1024 if usage is not None else 0.0
    row.served = row.questions = stats["n_completed"]
    row.busy_s, row.busy_rps = stats["busy_s"], stats["busy_rps"]
    row.limit_rps = FULL_CONCURRENCY / server.latency
    row.server_latency_ms = 1000 * stats.get("mean_latency_s", 0.0)
    row.server_in_flight = stats.get("mean_in_flight", 0.0)
    if row.served:
        row.ideal_rps = row.served / (math.ceil(row.served / FULL_CONCURRENCY) * server.latency)
        first, last = stats["first_arrival"], stats["last_done"]
        row.before_s, row.after_s = first - start, start + row.wall_s - last
        window = max(last - first, 1e-9)
        row.client_cpu_ms = 1000 * (_cpu_at(client, last) - _cpu_at(client, first)) / row.served
        row.client_busy = (_cpu_at(client, last) - _cpu_at(client, first)) / window
        row.server_busy = (_cpu_at(served, last) - _cpu_at(served, first)) / window
    row.load = os.getloadavg()[0]
    if proc.returncode != 0 and not row.note:
        lines = b"".join(err_chunks).decode("utf-8", "replace").strip().splitlines() or ["no output"]
        row.note = f"exit {proc.returncode}: {lines[-1][:90]}"
    return row


def print_full(rows: list[FullRow], latency: float) -> list[str]:
    """The whole-benchmark table, every repeat, then the spread; missed targets as lines."""
    missed: list[str] = []
    print(
        f"\nall of MMLU + CMMLU test (`proctor run --datasets {' '.join(FULL_DATASETS)} --max-concurrency "
        f"{FULL_CONCURRENCY}`), {latency * 1000:.0f} ms server, limit {FULL_CONCURRENCY / latency:.0f}/s;\n"
        f"rate = the server's count from the first request to the last answer; before/after = process "
        f"start -> first request, last answer -> exit;\ncpu ms/q and client/server busy = CPU in that "
        f"window (1.00 = one core); srv ms / srv fl = the server's mean time per request and mean requests "
        f"held;\n target: ratio >= {RATIO_TARGET:.0%} (best run of each size)"
    )
    header = (f"{'size':>4} {'questions':>9} {'req/s':>7} {'ratio':>6} {'ideal':>6} {'before s':>8} "
              f"{'after s':>7} {'wall s':>6} {'peak RSS':>8} {'cpu ms/q':>8} {'client':>6} {'server':>6} "
              f"{'srv ms':>6} {'srv fl':>6} {'load':>5}  note")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.size:>4} {r.questions:>9} {r.busy_rps:>7.0f} {r.ratio:>6.1%} "
            f"{r.ideal_rps / r.limit_rps if r.limit_rps else 0:>6.1%} {r.before_s:>8.2f} {r.after_s:>7.2f} "
            f"{r.wall_s:>6.1f} {r.peak_rss_mb:>6.0f}MB {r.client_cpu_ms:>8.3f} {r.client_busy:>6.2f} "
            f"{r.server_busy:>6.2f} {r.server_latency_ms:>6.1f} {r.server_in_flight:>6.1f} {r.load:>5.1f}  {r.note}"
        )
    peaks: dict[str, float] = {}
    for size in dict.fromkeys(r.size for r in rows):
        runs = [r for r in rows if r.size == size]
        best = max(runs, key=lambda r: (not r.note, r.ratio))
        ratios = sorted(r.ratio for r in runs)
        spread = f"{ratios[0]:.1%}-{ratios[-1]:.1%}" if len(ratios) > 1 else f"{ratios[0]:.1%}"
        peaks[size] = max(r.peak_rss_mb for r in runs)
        if size != FULL_TARGET_SIZE:  # a few rounds of 256: start-up and the last round weigh in
            verdict = "no target (shown for memory)"
        else:
            verdict = "OK" if best.ratio >= RATIO_TARGET and not best.note else "BELOW TARGET"
        print(f"{size:>4}: best {best.busy_rps:.0f}/s = {best.ratio:.1%} of the limit (runs: {spread}), "
              f"peak RSS {peaks[size]:.0f} MB (highest run)  {verdict}")
        if best.note:
            missed.append(f"MMLU+CMMLU {size}: {best.note}")
        elif size == FULL_TARGET_SIZE and best.ratio < RATIO_TARGET:
            missed.append(f"MMLU+CMMLU {size}: {best.ratio:.1%} of the limit < {RATIO_TARGET:.0%}")
    small, large = min(rows, key=lambda r: r.questions), max(rows, key=lambda r: r.questions)
    if large.questions > small.questions:
        grow = (peaks[large.size] - peaks[small.size]) * 1024 / (large.questions - small.questions)
        print(f"memory: peak RSS {', '.join(f'{k} {v:.0f} MB' for k, v in peaks.items())}; "
              f"{grow:.1f} KB more per question from {small.size} to {large.size}")
    return missed


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
    parser.add_argument("--full", nargs="*", choices=list(FULL_LIMITS), default=list(FULL_LIMITS),
                        metavar="SIZE", help="sizes of the MMLU + CMMLU run (1k 10k 25k; none: skip it)")
    parser.add_argument("--full-repeat", type=int, default=2, help="runs of each MMLU + CMMLU size")
    parser.add_argument("--only-full", action="store_true", help="only the MMLU + CMMLU case")
    args = parser.parse_args(argv)
    if args.only_full:
        args.skip_cli = args.skip_backend = args.no_lmeval = True
        args.sizes = []

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
    full: list[FullRow] = []
    if args.full and not (args.data_dir / "mmlu").is_dir():
        print(f"MMLU + CMMLU case skipped: no datasets in {args.data_dir} (give --data-dir)", file=sys.stderr)
        args.full = []
    try:
        for size in args.full:
            for _ in range(max(1, args.full_repeat)):
                full.append(bench_full(server, size, args.data_dir))
                r = full[-1]
                print(f"full     {size}: {r.busy_rps:.0f} req/s busy ({r.ratio:.1%}), before {r.before_s:.1f} s, "
                      f"after {r.after_s:.1f} s, RSS {r.peak_rss_mb:.0f} MB, load {r.load:.1f} {r.note}",
                      file=sys.stderr)
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
    missed = print_table(rows, args.latency) if rows else []
    if full:
        missed += print_full(full, args.latency)
    if not rows:
        pass
    elif lmeval_python is None:
        print(f"\nlm-evaluation-harness: not compared ({lmeval_why})")
    else:
        missed += print_comparison(rows, lmeval_info.get("version", "?"))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"ratio": r.ratio} for r in [*rows, *full]], indent=2))
    for line in missed:
        print(f"target missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
