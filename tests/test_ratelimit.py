"""The rate limiter and retry policy, alone and under an ApiBackend with a real server."""

from __future__ import annotations

import asyncio
import random
from email.utils import formatdate

import pytest

from backend_helpers import process_as_two_datasets
from openai_server import OpenAIServer
from proctor.config.schema import ApiModelConfig
from proctor.core import Message, Request
from proctor.models.api import ApiBackend
from proctor.models.ratelimit import RateLimiter
from proctor.models.retry import RetryPolicy, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_its_burst_then_spaces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4.0, burst=4.0, clock=clock)
    delays = [limiter.reserve() for _ in range(8)]
    assert delays[:4] == [0.0] * 4
    assert delays[4:] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_bucket_refills_while_idle_but_never_beyond_its_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=2.0, clock=clock)
    assert [limiter.reserve() for _ in range(2)] == [0.0, 0.0]
    clock.now += 100  # a long pause earns at most `burst` tokens
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_stricter_limit_wins_and_burst_is_one_second() -> None:
    assert RateLimiter.from_limits(None, None) is None
    assert RateLimiter.from_limits(5.0, None).rate == 5.0
    assert RateLimiter.from_limits(None, 120.0).rate == 2.0
    both = RateLimiter.from_limits(10.0, 60.0)  # 60 rpm = 1 qps: stricter than 10 qps
    assert both.rate == 1.0 and both.burst == 1.0
    assert RateLimiter.from_limits(50.0, 6000.0).burst == 50.0
    assert RateLimiter.from_limits(0.2, None).burst == 1.0  # at least one request


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.25 ") == 0.25
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 7, usegmt=True), now=now) == pytest.approx(7.0)
    assert parse_retry_after(formatdate(now - 7, usegmt=True), now=now) == 0.0


def test_backoff_is_full_jitter_exponential_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=5, base=0.5, cap=4.0, max_retry_after=30.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        draws = [policy.delay(retry, rng=rng) for _ in range(300)]
        assert 0.0 <= min(draws) and max(draws) <= ceiling
        assert max(draws) > 0.8 * ceiling  # spread over the whole range: full jitter
    assert policy.delay(1, retry_after=7.0, rng=rng) == 7.0
    assert policy.delay(1, retry_after=3600.0, rng=rng) == 30.0
    assert policy.max_attempts == 6


LATE_S = 0.25
"""How much later than its slot in the bucket a request may reach the server: timer lateness, and
a busy box where the server thread (same process, same GIL) reads several requests at once."""


def _bucket_excess(times: list[float], rate: float, burst: float) -> float:
    """Seconds of slack a token bucket (rate, burst) needs to explain these arrival times: the
    largest (requests in [t_i, t_j] - burst - 1) / rate - (t_j - t_i) over all pairs (<= 0: none)."""
    times = sorted(times)
    return max((j - i - burst) / rate - (times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times)))


@pytest.mark.parametrize("qps, rpm", [(20.0, None), (1000.0, 1200.0)])
def test_rate_is_shared_by_concurrent_process_calls(qps: float, rpm: float | None) -> None:
    rate = 20.0  # both cases: 20 requests/s, burst 20
    requests = [Request(kind="generate", messages=(Message("user", f"q{i}"),)) for i in range(40)]
    with OpenAIServer() as server:
        config = ApiModelConfig(api_base=server.base_url, qps=qps, rpm=rpm, max_concurrency=64)
        asyncio.run(process_as_two_datasets(ApiBackend(config), requests))
        arrivals = [r.arrived for r in server.post_requests()]
    assert len(arrivals) == 40
    # 20 at once (the 1-second burst), then one every 50 ms: 1 s in all, less the time
    # the first request took to open its connection (without a limiter: ~0.05 s), less the
    # lateness of the first arrival (a busy box has shown 0.17 s).
    assert max(arrivals) - min(arrivals) >= (40 - rate) / rate - LATE_S
    # In any window of T seconds (not only after the burst: an idle moment refills the bucket):
    # at most the burst plus rate * T, one request of rounding and LATE_S of lateness.
    assert _bucket_excess(arrivals, rate, rate) <= LATE_S
    # Not throttled beyond the rate either: the 20 after the burst take about 1 s, not several.
    assert max(arrivals) - min(arrivals) <= 3 * (40 - rate) / rate + 1.0
