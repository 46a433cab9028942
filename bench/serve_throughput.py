"""`proctor serve` throughput: requests/s and latency with batching on and off.

A `proctor serve` subprocess serves a model built by `build_tiny_model` at the HF
benchmark's size (hidden 512, 8 layers, 8 heads: ~25M parameters, float32). For
each batching mode (max-batch-size 32, and 1 = one request at a time) and each
concurrency C, C clients each send short chat requests (max_tokens 16,
temperature 0) back to back until N requests are answered. Printed: requests/s,
client-side p50/p95 latency, and the server's batch counters.

Target: at concurrency 32, batching gives >= 3x the requests/s of one-at-a-time.

    .venv/bin/python bench/serve_throughput.py [--concurrency 1 8 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from proctor.serve.health import ServerNotReady, free_port, stop_process, wait_healthy

TARGET_SPEEDUP = 3.0
MODEL_NAME = "bench-llama-512x8"


@dataclass
class Row:
    max_batch_size: int
    concurrency: int
    requests: int
    wall_s: float
    latencies: list[float]
    batches: int
    largest_batch: int

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def build_model(model_dir: Path | None) -> Path:
    import platformdirs

    from proctor.tiny_model import build_tiny_model

    target = model_dir or Path(platformdirs.user_cache_dir("proctor")) / "bench" / "serve-llama-512x8"
    return build_tiny_model(target, hidden_size=512, num_layers=8, num_heads=8, vocab_size=8000)


class Server:
    """`python -m proctor serve` in a subprocess, stopped on exit."""

    def __init__(self, model: Path, max_batch_size: int, device: str | None, threads: int | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "proctor", "serve", str(model), "--port", str(self.port),
                "--served-model-name", MODEL_NAME, "--max-batch-size", str(max_batch_size),
                "--log-level", "warning"]  # fmt: skip
        if device:
            argv += ["--device", device]
        env = dict(os.environ)
        if threads:
            # torch reads it at start-up: fewer threads than cores avoids spinning
            # threads fighting other work on a shared machine.
            env["OMP_NUM_THREADS"] = str(threads)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env)

    def __enter__(self) -> "Server":
        try:
            wait_healthy(self.base, self.proc, timeout_s=300, interval_s=0.2)
        except ServerNotReady as exc:
            stop_process(self.proc)
            raise RuntimeError(f"{exc}: {self.proc.stderr.read()[-2000:]}") from None  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)

    def stats(self) -> dict[str, int]:
        return httpx.get(self.base + "/health", timeout=10).json()


def _body(i: int, max_tokens: int) -> dict[str, object]:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": f"Question {i}: what is {i % 97} plus {i % 13}? Answer briefly."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


async def _load(base: str, concurrency: int, n: int, max_tokens: int, offset: int) -> tuple[float, list[float]]:
    """C closed-loop clients until n requests are answered: (wall seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                r = await client.post("/v1/chat/completions", json=_body(offset + i, max_tokens))
                r.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def measure(server: Server, max_batch_size: int, concurrency: int, n: int, max_tokens: int) -> Row:
    # Warm-up: first calls pay for lazy initialisation (kernels, allocator).
    asyncio.run(_load(server.base, min(concurrency, 4), min(concurrency, 4), max_tokens, offset=10_000))
    before = server.stats()
    wall, latencies = asyncio.run(_load(server.base, concurrency, n, max_tokens, offset=concurrency * 1000))
    after = server.stats()
    return Row(max_batch_size, concurrency, n, wall, latencies,
               batches=after["batches"] - before["batches"], largest_batch=after["largest_batch"])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per measure (default: max(16, 2 x concurrency))")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--model-dir", type=Path, default=None, help="where the model is built/cached")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the server (default: torch's choice)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    model = build_model(args.model_dir)
    print(f"model: {model} (built/cached in {time.perf_counter() - t0:.1f}s); "
          f"{os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}); server threads {args.threads or 'default'}; "
          f"max_tokens {args.max_tokens}", flush=True)
    rows: list[Row] = []
    for max_batch_size in (32, 1):
        with Server(model, max_batch_size, args.device, args.threads) as server:
            for c in args.concurrency:
                n = args.requests or max(16, 2 * c)
                row = measure(server, max_batch_size, c, n, args.max_tokens)
                rows.append(row)
                print(f"  max-batch-size {max_batch_size:>2}, concurrency {c:>2}: {row.rps:7.2f} req/s",
                      flush=True)

    print()
    header = (f"{'batching':<22} {'conc':>4} {'reqs':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'batches':>8} {'largest':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        label = "on  (max-batch-size 32)" if r.max_batch_size > 1 else "off (max-batch-size 1)"
        print(f"{label:<22} {r.concurrency:>4} {r.requests:>5} {r.rps:>8.2f} {r.pct(0.5) * 1e3:>8.0f} "
              f"{r.pct(0.95) * 1e3:>8.0f} {r.batches:>8} {r.largest_batch:>7}")
    print()
    on = {r.concurrency: r for r in rows if r.max_batch_size > 1}
    off = {r.concurrency: r for r in rows if r.max_batch_size == 1}
    ok = True
    for c in sorted(on):
        speedup = on[c].rps / off[c].rps
        line = f"concurrency {c:>2}: batching is {speedup:.2f}x one-at-a-time"
        if c == 32:
            passed = speedup >= TARGET_SPEEDUP
            ok = ok and passed
            line += f"  (target >= {TARGET_SPEEDUP:.0f}x: {'PASS' if passed else 'FAIL'})"
        print(line)
    if 32 not in on:
        ok = False  # the target is measured at concurrency 32: without it nothing was checked
        print(f"target not measured: --concurrency must include 32 (got {sorted(on)})")
    print(f"median latency is client-side, over HTTP; total {time.perf_counter() - t0:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
