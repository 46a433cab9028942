"""Adaptive concurrency and the token-rate limit, against real servers on 127.0.0.1 that push back.

The capacity server answers 429 to any request arriving while `capacity` are already being
served, as a provider's concurrency limit does; the client does not know the capacity.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from capacity_server import CapacityApp
from openai_server import OpenAIServer
from proctor.config.schema import ApiModelConfig
from proctor.core import Message, Request
from proctor.models.api import ApiBackend
from proctor.models.ratelimit import TokenRateLimiter
from proctor.models.slots import AdaptiveLimit

LATENCY = 0.1
CAPACITY = 32


def capacity_server(capacity: int) -> tuple[OpenAIServer, CapacityApp]:
    server = OpenAIServer()
    server.app = app = CapacityApp(capacity, responder=lambda body: "A", latency=LATENCY)
    return server, app


def _requests(n: int) -> list[Request]:
    return [Request(kind="generate", messages=(Message("user", f"question {i}"),), max_tokens=8) for i in range(n)]


async def _run(backend: ApiBackend, requests: list[Request]) -> dict[int, Any]:
    got: dict[int, Any] = {}
    await backend.start()
    try:
        await backend.process(requests, lambda i, r: got.__setitem__(i, r))
    finally:
        await backend.close()
    return got


@pytest.mark.parametrize(("upper", "start"), [(CAPACITY * 8, None), (CAPACITY * 8, CAPACITY // 8)],
                         ids=["bound-8x-too-high", "opening-8x-too-low"])
def test_adaptive_concurrency_reaches_the_hidden_capacity(upper: int, start: int | None) -> None:
    n = 1600
    server, app = capacity_server(CAPACITY)
    with server:
        config = ApiModelConfig(api_base=server.base_url, model="test-model", max_concurrency=upper,
                                adaptive=True, adaptive_start=start, retry=20)
        backend = ApiBackend(config, backoff_base=0.01)
        began = time.monotonic()
        got = asyncio.run(_run(backend, _requests(n)))
        elapsed = time.monotonic() - began
        refused, served = app.refused, app.served
    assert len(got) == n and all(r.ok for r in got.values())
    assert served == n
    limit_rps = CAPACITY / LATENCY
    # Goodput from the server's first answer to its last: what the capacity allows, less the
    # slow start and the sawtooth. 90% is the target (bench/api_adaptive.py holds it, with the
    # server in its own process); here client and server share a busy 2-core box.
    span = app.last_served - app.first_served  # type: ignore[operator]
    goodput = served / span
    print(f"start={start}: {goodput:.0f}/s of {limit_rps:.0f}/s ({goodput / limit_rps:.0%}), "
          f"{refused} refused of {refused + served} ({refused / (refused + served):.1%}), {elapsed:.2f} s")
    # Bounds with room for a loaded CI box (idle: 90%+ of the limit, 0.5-2.4% refused; the bench
    # holds the targets of 90% and 5%); a fixed limit 8x too high is refused ~70% of the time.
    assert goodput >= 0.7 * limit_rps
    assert refused < 0.12 * (refused + served)


def test_a_fixed_limit_above_capacity_is_refused_far_more() -> None:
    """The baseline the adaptive limit is measured against: 8x the capacity, fixed."""
    server, app = capacity_server(CAPACITY)
    with server:
        config = ApiModelConfig(api_base=server.base_url, model="test-model", max_concurrency=CAPACITY * 8, retry=20)
        asyncio.run(_run(ApiBackend(config, backoff_base=0.01), _requests(200)))
        assert app.refused > 0.3 * (app.refused + app.served)


def test_window_rules() -> None:
    """Slow start: x2 per round trip until the first push-back; a push-back sets the window
    to 0.95 x what was in flight, once per round trip; it climbs back by one per answer to
    just below that level, then by half a request per round trip; never above the bound."""
    now = [0.0]
    assert AdaptiveLimit(64).limit == 16  # the opening window
    limit = AdaptiveLimit(64, start=4, clock=lambda: now[0])
    assert limit.limit == 4
    for _ in range(4):  # one round trip of clean answers
        limit.observe(sent_at=0.0, latency=0.01, pushed_back=False)
    assert limit.limit == 8
    limit.in_use = 6
    now[0] = 1.0
    limit.observe(sent_at=0.5, latency=0.01, pushed_back=True)
    assert limit.window == pytest.approx(0.95 * 6)
    limit.observe(sent_at=0.9, latency=0.01, pushed_back=True)  # sent before the cut
    assert limit.window == pytest.approx(0.95 * 6) and limit.cuts == 1
    for _ in range(12):  # two round trips of clean answers: +1 in all
        limit.observe(sent_at=1.1, latency=0.01, pushed_back=False)
    assert 6.6 < limit.window < 6.8
    limit.in_use = 40  # more in flight than the window: the window is what was held
    now[0] = 2.0
    limit.observe(sent_at=1.5, latency=0.01, pushed_back=True)
    assert limit.window == pytest.approx(0.95 * 6.7, abs=0.1)
    deep = AdaptiveLimit(64, start=30, clock=lambda: now[0])
    deep.in_use = 30
    deep.observe(sent_at=3.0, latency=0.01, pushed_back=True)
    deep.window = 10.0  # far below the level pushed back at (30)
    deep.observe(sent_at=3.1, latency=0.01, pushed_back=False)
    assert deep.window == 11.0  # climbs back one per answer
    for _ in range(40):
        deep.observe(sent_at=3.1, latency=0.01, pushed_back=False)
    assert 29.0 <= deep.window < 30.0  # ... to just below it, then slowly
    high = AdaptiveLimit(2)
    for _ in range(10):
        high.observe(sent_at=0.0, latency=0.01, pushed_back=False)
    assert high.limit == 2


def test_rising_latency_backs_off() -> None:
    limit = AdaptiveLimit(64, start=16)
    for _ in range(30):
        limit.observe(sent_at=-1.0, latency=0.02, pushed_back=False)
    before = limit.window
    limit.observe(sent_at=time.perf_counter(), latency=0.5, pushed_back=False)  # 25x slower
    assert limit.window < before and limit.cuts == 1


def test_max_concurrency_auto_is_adaptive() -> None:
    config = ApiModelConfig(api_base="http://127.0.0.1:1/v1", max_concurrency="auto")
    assert config.adaptive and config.max_concurrency >= 256


def test_token_rate_limit_holds_and_settles_on_usage() -> None:
    """--tpm 6000 is 100 tokens/s; each request reserves its prompt estimate + max_tokens, and
    the server's usage corrects it: requests that used far less than reserved free the budget."""
    tpm = 6000.0
    with OpenAIServer(responder=lambda body: "A", latency=0.0) as server:
        config = ApiModelConfig(api_base=server.base_url, model="test-model", tpm=tpm, max_concurrency=16)
        requests = [Request(kind="generate", messages=(Message("user", "q" * 40),), max_tokens=100)
                    for _ in range(12)]
        began = time.monotonic()
        asyncio.run(_run(ApiBackend(config, backoff_base=0.01), requests))
        elapsed = time.monotonic() - began
        arrivals = sorted(r.arrived for r in server.requests if r.method == "POST")
    # Reserved ~130 tokens each (~1,560 in all); 100/s with a one-second burst. The test
    # server reports tiny usage, so after each answer the schedule moves back: far faster
    # than 1,560 / 100 = 15.6 s, but never all in the first second.
    assert len(arrivals) == 12
    assert arrivals[-1] - arrivals[0] < 8.0
    assert elapsed < 10.0
    tokens = TokenRateLimiter(tpm, clock=lambda: 0.0)
    assert tokens.wait_for(100) == 0.0  # the burst: one second's worth
    tokens.take(100)
    assert tokens.wait_for(100) == pytest.approx(1.0)  # the next 100 tokens wait a second
    tokens.settle(100, 10)  # used 10, not 100
    assert tokens.wait_for(100) == pytest.approx(0.1)
    assert tokens.wait_for(10) == 0.0


def test_token_limiter_charges_an_overrun_that_settles_after_the_bucket_refilled() -> None:
    """A request that used more than it reserved is charged even when its answer came after the
    schedule fell behind the clock (a slow answer at a high tpm): the excess leaves the bucket."""
    now = [0.0]
    tokens = TokenRateLimiter(6000.0, clock=lambda: now[0])  # 100 tokens/s, burst 100
    tokens.take(10)  # reserved 10 (a low estimate)
    now[0] = 5.0  # the answer arrives 5 s later: the bucket is full again
    tokens.settle(10, 110)  # it used 110: 100 more than reserved
    assert tokens.wait_for(100) == pytest.approx(1.0)  # the overrun emptied the bucket
