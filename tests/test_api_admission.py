"""Many datasets at once share a model's limit: a request's body is built only once it has a
slot (at most the concurrency limit built at a time), every one answered once. 32 subjects at
concurrency 256 held 8,192 built bodies waiting for a slot before."""

from __future__ import annotations

import asyncio

from openai_server import OpenAIServer, last_user_message

from proctor.config.schema import ApiModelConfig
from proctor.core import Message, Request, Response
from proctor.models import api
from proctor.models.api import ApiBackend

CONCURRENCY = 4
CALLS = 10
PER_CALL = 12


def test_concurrent_calls_build_bodies_only_with_a_slot(monkeypatch) -> None:
    built = answered = peak = 0
    original_plan, original_answer = api.plan_request, ApiBackend._answer

    def plan(*args, **kwargs):
        nonlocal built, peak
        built += 1
        peak = max(peak, built - answered)
        return original_plan(*args, **kwargs)

    async def answer(self: ApiBackend, state, request: Request) -> Response:
        nonlocal answered
        try:
            return await original_answer(self, state, request)
        finally:
            answered += 1

    monkeypatch.setattr(api, "plan_request", plan)
    monkeypatch.setattr(ApiBackend, "_answer", answer)
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
    assert built == CALLS * PER_CALL and peak <= CONCURRENCY, (built, peak)
    for c in range(CALLS):
        assert sorted(answers[c]) == [(i, f"C{c} Q{i}") for i in range(PER_CALL)]
