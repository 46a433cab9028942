"""Engine parallelism benchmark: 3 datasets x 2 API models against two local servers (200 ms latency).

Each server is bench/fake_openai_server.py in its own process. Every row runs the whole
command `proctor run config.yaml ...` as a subprocess (startup included) and reads the
servers' counters:

  sequential     one task at a time, one request at a time (--max-num-workers 1, max_concurrency 1)
  tasks serial   one task at a time, each model's requests concurrent (--max-num-workers 1)
  engine         the engine's parallelism: every task at once, each model keeping its own limit
  cache warm     the engine row again, in a new run folder, with the response cache warm

Targets: the warm rerun sends 0 requests and takes under 2 s; the engine row is close to the
ideal (requests per model / concurrency x latency, plus startup) and far below sequential.

    .venv/bin/python bench/engine_parallel.py [--limit 20] [--concurrency 8] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PROCTOR_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DATASETS = ["ceval-computer_network", "cmmlu-anatomy", "mmlu-abstract_algebra"]
MODELS = ["bench-a", "bench-b"]
WARM_TARGET_S = 2.0
PARALLEL_TARGET = 3.0  # the engine (all tasks at once) against one task at a time, same requests


class Server:
    """bench/fake_openai_server.py in a subprocess; stops when this process ends."""

    def __init__(self, model: str, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fake_openai_server.py"), "--latency", str(latency),
             "--model", model, "--stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.base}/_stats", timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.base}/_reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=10).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass
class Row:
    name: str
    wall_s: float
    requests: int
    max_in_flight: int
    busy_s: float  # first request's arrival to the last response, across both servers
    exit_code: int


def write_config(path: Path, servers: list[Server], concurrency: int) -> None:
    lines = ["models:"]
    for model, server in zip(MODELS, servers):
        lines += ["  - type: api", f"    api_base: {server.base}/v1", f"    model: {model}",
                  f"    max_concurrency: {concurrency}"]
    lines.append("datasets:")
    lines += [f"  - {d}" for d in DATASETS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_row(name: str, config: Path, servers: list[Server], extra: list[str], env: dict[str, str],
            common: list[str]) -> Row:
    for server in servers:
        server.reset()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "proctor", "run", str(config), *common, *extra],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    stats = [s.stats() for s in servers]
    firsts = [s["first_arrival"] for s in stats if s["first_arrival"] is not None]
    lasts = [s["last_done"] for s in stats if s["last_done"] is not None]
    busy = max(lasts) - min(firsts) if firsts and lasts else 0.0
    requests = sum(s["n_requests"] for s in stats)
    in_flight = max(s["max_in_flight"] for s in stats) if requests else 0
    return Row(name, wall, requests, in_flight, busy, proc.returncode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="samples per dataset")
    parser.add_argument("--concurrency", type=int, default=8, help="each model's max_concurrency")
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--skip-sequential", action="store_true", help="skip the slow sequential row")
    args = parser.parse_args(argv)

    servers = [Server(model, args.latency) for model in MODELS]
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
            work, config = Path(tmp) / "outputs", Path(tmp) / "run.yaml"
            env = {**os.environ, "PROCTOR_CACHE_DIR": str(Path(tmp) / "cache")}
            common = ["--limit", str(args.limit), "--data-dir", str(args.data_dir), "-w", str(work)]
            if not args.skip_sequential:
                write_config(config, servers, 1)
                rows.append(run_row("sequential", config, servers, ["--max-num-workers", "1", "--no-cache"], env,
                                    common))
            write_config(config, servers, args.concurrency)
            rows.append(run_row("tasks serial", config, servers, ["--max-num-workers", "1", "--no-cache"], env,
                                common))
            rows.append(run_row("engine", config, servers, [], env, common))  # fills the cache
            rows.append(run_row("cache warm", config, servers, [], env, common))
    finally:
        for server in servers:
            server.stop()

    engine = next(r for r in rows if r.name == "engine")
    per_model = engine.requests / len(MODELS)  # small subjects have fewer than --limit samples
    rounds = -(-int(per_model) // args.concurrency)
    print(f"\n{len(DATASETS)} datasets x {len(MODELS)} API models, --limit {args.limit}: {engine.requests} requests; "
          f"server latency {args.latency:g} s; max_concurrency {args.concurrency} per model")
    print(f"ideal server-busy time with the engine: {rounds} rounds x {args.latency:g} s = "
          f"{rounds * args.latency:.2f} s "
          "(both models at once); wall adds process startup\n")
    header = f"{'run':<14}{'wall s':>9}{'busy s':>9}{'requests':>10}{'max in flight':>15}{'vs sequential':>15}"
    print(header)
    print("-" * len(header))
    base = rows[0].wall_s if rows[0].name == "sequential" else None
    for row in rows:
        speedup = f"{base / row.wall_s:.1f}x" if base else "-"
        print(f"{row.name:<14}{row.wall_s:>9.2f}{row.busy_s:>9.2f}{row.requests:>10}{row.max_in_flight:>15}"
              f"{speedup:>15}")
    warm = rows[-1]
    warm_ok = warm.requests == 0 and warm.wall_s < WARM_TARGET_S
    print(f"\ncache warm rerun: {warm.requests} requests in {warm.wall_s:.2f} s "
          f"(target 0 requests, < {WARM_TARGET_S:g} s): {'OK' if warm_ok else 'MISSED'}")
    serial = next(r for r in rows if r.name == "tasks serial")
    speedup = serial.wall_s / engine.wall_s
    parallel_ok = speedup >= PARALLEL_TARGET
    print(f"engine vs tasks one at a time: {speedup:.1f}x (target >= {PARALLEL_TARGET:g}x): "
          f"{'OK' if parallel_ok else 'MISSED'}")
    failed = [r.name for r in rows if r.exit_code != 0]
    if failed:
        print(f"runs that failed: {', '.join(failed)}: MISSED")
    return 0 if warm_ok and parallel_ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
