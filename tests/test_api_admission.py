"""Many datasets at once share a model's limit: requests are taken from all of them only as
they can go (at most twice the concurrency built and waiting), every one answered once.
32 subjects at concurrency 256 held 8,192 built requests waiting before."""

from __future__ import annotations

import asyncio

from openai_server import OpenAIServer, last_user_message

from proctor.config.schema import ApiModelConfig
from proctor.core import Message, Request, Response
from proctor.models.api import ApiBackend

CONCURRENCY = 4
CALLS = 10
PER_CALL = 12


def test_concurrent_calls_take_requests_only_as_they_can_go(monkeypatch) -> None:
    active = peak = 0
    original = ApiBackend._answer

    async def counted(self: ApiBackend, state, request: Request) -> Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await original(self, state, request)
        finally:
            active -= 1

    monkeypatch.setattr(ApiBackend, "_answer", counted)
    with OpenAIServer(lambda body: last_user_message(body).upper(), latency=0.02, model_ids=["m"]) as server:
        backend = ApiBackend(ApiModelConfig(api_base=server.base_url, max_concurrency=CONCURRENCY))
        answers: dict[int, list[tuple[int, str | None]]] = {c: [] for c in range(CALLS)}

        async def run() -> None:
            await backend.start()
            try:
                await asyncio.gather(*(
                    backend.process(
                        [Request(kind="generate", messages=(Message("user", f"c{c} q{i}"),), max_tokens=4)
                         for i in range(PER_CALL)],
                        lambda i, r, c=c: answers[c].append((i, r.text)),
                    )
                    for c in range(CALLS)
                ))
            finally:
                await backend.close()

        asyncio.run(run())
        assert server.stats().max_in_flight <= CONCURRENCY
    assert peak <= 2 * CONCURRENCY, peak
    for c in range(CALLS):
        assert sorted(answers[c]) == [(i, f"C{c} Q{i}") for i in range(PER_CALL)]
