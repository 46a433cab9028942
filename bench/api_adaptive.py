"""Adaptive concurrency against a server with a hidden capacity (issue: limits that adapt).

A fake OpenAI server in its own process (bench/fake_openai_server.py --capacity C) answers
429 to any request arriving while C are being served, with a fixed latency L, so at most
C / L answers per second are possible. For each start it runs N generate requests through
ApiBackend and prints the goodput (answers per second, first answer to last) against that
limit and the share of requests the server refused:

  fixed-8x      --max-concurrency 8C, not adaptive (the baseline: what a guess 8x too high costs)
  fixed-C       --max-concurrency C: the best a fixed limit can do, knowing the capacity
  adaptive-8x   --max-concurrency 8C --adaptive (a bound 8x too high)
  adaptive-low  --adaptive with an opening window of C/8 (8x too low)

Targets (exit 1 when one is missed): the adaptive rows reach >= 90% of the reachable limit
with < 5% of requests refused. The reachable limit is C / L, or what `fixed-C` reached when
this machine cannot reach C / L even knowing the capacity (client and server share its
cores); both ratios are printed.

    .venv/bin/python bench/api_adaptive.py [--capacity 64] [--latency 0.2] [-n 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from api_throughput import FakeServer  # noqa: E402

from proctor.config.schema import ApiModelConfig  # noqa: E402
from proctor.core import Message, Request, Response  # noqa: E402
from proctor.models.api import ApiBackend  # noqa: E402

GOODPUT_TARGET = 0.90
REFUSED_TARGET = 0.05


async def _measure(config: ApiModelConfig, n: int) -> tuple[float, int, int]:
    """(goodput per second, answers, refused attempts) from the client's side."""
    backend = ApiBackend(config, backoff_base=0.02)
    requests = [Request(kind="generate", messages=(Message("user", f"question {i}"),), max_tokens=8)
                for i in range(n)]
    done: list[float] = []
    responses: list[Response] = []

    def on_response(index: int, response: Response) -> None:
        done.append(time.perf_counter())
        responses.append(response)

    await backend.start()
    started = time.perf_counter()
    try:
        await backend.process(requests, on_response)
    finally:
        await backend.close()
    ok = sum(1 for r in responses if r.ok)
    refused = sum(r.attempts - 1 for r in responses)
    span = max(done) - started
    return ok / span, ok, refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args(argv)
    c, latency, n = args.capacity, args.latency, args.n
    limit = c / latency
    server = FakeServer(latency, "A", ["--capacity", str(c), "--model", "bench-model"])
    cases = {
        "fixed-8x": dict(max_concurrency=8 * c),
        "fixed-C": dict(max_concurrency=c),
        "adaptive-8x": dict(max_concurrency=8 * c, adaptive=True),
        "adaptive-low": dict(max_concurrency=8 * c, adaptive=True, adaptive_start=max(1, c // 8)),
    }
    missed = []
    print(f"capacity {c} in flight, latency {latency:g} s: limit {limit:.0f} answers/s; {n} requests each")
    print(f"{'case':<14}{'answers/s':>10}{'of C/L':>8}{'of fixed-C':>12}{'refused':>10}")
    reachable = limit
    try:
        for name, options in cases.items():
            config = ApiModelConfig(api_base=server.base_url, model="bench-model", retry=50, **options)
            goodput, ok, refused = asyncio.run(_measure(config, n))
            if name == "fixed-C":
                reachable = min(limit, goodput)
            share = refused / (refused + ok)
            print(f"{name:<14}{goodput:>10.0f}{goodput / limit:>8.0%}{goodput / reachable:>12.0%}{share:>10.1%}")
            if name.startswith("adaptive") and (goodput < GOODPUT_TARGET * reachable or share >= REFUSED_TARGET):
                missed.append(name)
    finally:
        server.close()
    if missed:
        print(f"missed the target (>= {GOODPUT_TARGET:.0%} of the reachable limit, < {REFUSED_TARGET:.0%} refused): "
              + ", ".join(missed))
        return 1
    print(f"target met: adaptive rows >= {GOODPUT_TARGET:.0%} of the reachable limit with < {REFUSED_TARGET:.0%} refused")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
