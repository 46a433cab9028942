"""ApiBackend against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence

import pytest

from backend_helpers import process_as_two_datasets
from openai_server import FailurePlan, OpenAIServer, Reject, free_port, last_user_message
from proctor.config.schema import ApiModelConfig
from proctor.core import Message, Request, Response
from proctor.errors import BackendError
from proctor.models.api import ApiBackend
from proctor.models.base import Backend

FAST = 0.001  # backoff base for tests: retries without real waiting


def make_backend(server: OpenAIServer, backoff_base: float = FAST, **options: Any) -> ApiBackend:
    return ApiBackend(
        ApiModelConfig(api_base=server.base_url, **options), backoff_base=backoff_base
    )


def ask(question: str, **options: Any) -> Request:
    return Request(kind="generate", messages=(Message("user", question),), **options)


def answer_from_question(body: dict[str, Any]) -> str:
    """The answer is derived from the question, so a mixed-up response would show."""
    return "answer to " + last_user_message(body)


class Collected:
    """on_response that records every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Response]] = []
        self.times: list[float] = []

    def __call__(self, index: int, response: Response) -> None:
        self.calls.append((index, response))
        self.times.append(time.monotonic())

    @property
    def by_index(self) -> dict[int, Response]:
        return dict(self.calls)


async def run_all(backend: ApiBackend, requests: Sequence[Request]) -> Collected:
    got = Collected()
    await backend.start()
    try:
        await backend.process(requests, got)
    finally:
        await backend.close()
    return got


def test_is_a_backend_and_discovers_the_first_model(caplog: pytest.LogCaptureFixture) -> None:
    with OpenAIServer(model_ids=["alpha", "beta"]) as server:
        backend = make_backend(server)
        assert isinstance(backend, Backend)
        with caplog.at_level(logging.WARNING, logger="proctor.models.api"):
            asyncio.run(backend.start())
            asyncio.run(backend.close())
    assert backend.model_id == "alpha"
    assert backend.name == "alpha"
    assert backend.chat is True
    assert backend.identity == f"api|{server.base_url}|alpha|chat"
    assert any("beta" in r.getMessage() and "alpha" in r.getMessage() for r in caplog.records)
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1/models")]


def test_configured_model_and_abbr_win_over_discovery() -> None:
    with OpenAIServer(model_ids=["alpha", "beta"]) as server:
        backend = make_backend(server, model="beta", abbr="my-beta", api_type="completions")
        got = asyncio.run(run_all(backend, [Request(kind="generate", prompt="2+2=")]))
    assert backend.name == "my-beta"
    assert backend.identity == f"api|{server.base_url}|beta|completions"
    assert got.by_index[0].text == "A"
    assert server.post_requests()[0].json["model"] == "beta"


def test_identity_is_normalised_and_secret_free() -> None:
    config = ApiModelConfig(
        api_base="HTTP://user:hunter2@Example.COM:80/v1/?token=abc#frag", model="m"
    )
    backend = ApiBackend(config)
    assert backend.identity == "api|http://example.com/v1|m|chat"
    assert "hunter2" not in repr(backend) and "abc" not in repr(backend)


def test_chat_generate_texts_usage_and_request_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    questions = [f"question {i}?" for i in range(12)]
    requests = [ask(q, max_tokens=7, temperature=0.5, stop=("\n\n",)) for q in questions]
    with OpenAIServer(answer_from_question) as server:
        got = asyncio.run(run_all(make_backend(server), requests))
    assert sorted(i for i, _ in got.calls) == list(range(12))
    for i, question in enumerate(questions):
        response = got.by_index[i]
        assert response.ok and response.attempts == 1
        assert response.text == f"answer to {question}"
        assert response.prompt_tokens == 2  # the server counts words
        assert response.completion_tokens == 4
        assert response.latency_s > 0
    posts = server.post_requests()
    assert {r.path for r in posts} == {"/v1/chat/completions"}
    body = posts[0].json
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["stop"] == ["\n\n"]
    assert body["messages"][0]["role"] == "user"
    assert all("authorization" not in r.headers for r in server.requests)


def test_completions_generate_sends_the_prompt() -> None:
    requests = [Request(kind="generate", prompt=f"Q: {i}\nA:", max_tokens=3) for i in range(3)]
    with OpenAIServer(lambda body: " " + body["prompt"].split()[1]) as server:
        got = asyncio.run(run_all(make_backend(server, api_type="completions"), requests))
    assert [got.by_index[i].text for i in range(3)] == [" 0", " 1", " 2"]
    posts = server.post_requests()
    assert {r.path for r in posts} == {"/v1/completions"}
    assert sorted(r.json["prompt"] for r in posts) == [f"Q: {i}\nA:" for i in range(3)]
    assert all("stop" not in r.json for r in posts)


def test_completions_model_refuses_chat_requests_without_sending() -> None:
    with OpenAIServer() as server:
        got = asyncio.run(run_all(make_backend(server, api_type="completions"), [ask("hi")]))
    assert got.by_index[0].error is not None and "prompt" in got.by_index[0].error
    assert got.by_index[0].text is None
    assert server.post_requests() == []


def test_loglikelihood_follows_the_shared_rule() -> None:
    # Word tokens with their leading space; log-prob = -0.5 * len(token), first None.
    requests = [
        # Plain boundary: " A" and " B c" start at len(context).
        Request(kind="loglikelihood", context="Answer:", continuations=(" A", " B c")),
        # Straddling token: context ends with a space, " A" starts inside it and counts.
        Request(kind="loglikelihood", context="Answer: ", continuations=("A", "Bb")),
    ]
    with OpenAIServer(shuffle_choices=True) as server:  # clients must map by `index`
        got = asyncio.run(run_all(make_backend(server), requests))
    first, second = got.by_index[0], got.by_index[1]
    assert first.loglikelihoods == (-1.0, -2.0)  # " A"; " B" + " c"
    assert first.continuation_lengths == (1, 2)
    assert second.loglikelihoods == (-1.0, -1.5)  # " A"; " Bb"
    assert second.continuation_lengths == (1, 1)
    posts = server.post_requests()
    assert len(posts) == 2  # one HTTP request per loglikelihood Request
    body = next(r.json for r in posts if r.json["prompt"][1] == "Answer: Bb")
    assert body["prompt"] == ["Answer: A", "Answer: Bb"]
    assert (body["echo"], body["logprobs"], body["max_tokens"], body["temperature"]) == (
        True,
        1,
        0,
        0,
    )
    assert posts[0].path == "/v1/completions"


def test_loglikelihood_without_prompt_logprobs_fails_clearly() -> None:
    request = Request(kind="loglikelihood", context="Q", continuations=(" A", " B"))
    with OpenAIServer(supports_echo=False) as server:
        got = asyncio.run(run_all(make_backend(server, retry=3), [request]))
    response = got.by_index[0]
    assert response.loglikelihoods is None
    assert "does not return prompt log-probs" in response.error
    assert "400" in response.error
    assert response.attempts == 1 and len(server.post_requests()) == 1  # a 4xx is not retried


@pytest.mark.parametrize("kind", ["429", "500", "503", "malformed"])
def test_first_attempt_failures_are_retried_and_nothing_is_lost(kind: str) -> None:
    requests = [ask(f"q{i}") for i in range(20)]
    plan = FailurePlan(first_attempt=kind)  # type: ignore[arg-type]
    with OpenAIServer(answer_from_question, failures=plan) as server:
        got = asyncio.run(run_all(make_backend(server, retry=2, max_concurrency=4), requests))
    assert sorted(i for i, _ in got.calls) == list(range(20))  # exactly once each
    for i in range(20):
        assert got.by_index[i].text == f"answer to q{i}"
        assert got.by_index[i].attempts == 2
    assert len(server.post_requests()) == 40
    assert sum(r.injected == kind for r in server.post_requests()) == 20


def test_timeouts_are_retried() -> None:
    plan = FailurePlan(first_attempt="timeout", timeout_sleep=20.0)
    with OpenAIServer(answer_from_question, failures=plan) as server:
        start = time.monotonic()
        got = asyncio.run(run_all(make_backend(server, timeout=0.3), [ask("slow"), ask("slower")]))
        elapsed = time.monotonic() - start
    assert [got.by_index[i].text for i in (0, 1)] == ["answer to slow", "answer to slower"]
    assert all(got.by_index[i].attempts == 2 for i in (0, 1))
    # The client gave up after 0.3 s instead of waiting the server's 20 s (~0.4 s in all; the
    # bound leaves a busy box many times that).
    assert elapsed < 5.0


def test_retry_after_is_honoured() -> None:
    plan = FailurePlan(first_attempt="429", retry_after="0.4")
    with OpenAIServer(failures=plan) as server:
        got = asyncio.run(run_all(make_backend(server), [ask("x")]))
    first, second = server.post_requests()
    assert got.by_index[0].ok and got.by_index[0].attempts == 2
    assert first.status == 429 and second.status == 200
    assert second.arrived - first.done >= 0.38  # the server's word, not the 1 ms backoff


def test_failure_after_all_retries_is_recorded_never_answered() -> None:
    requests = [ask("a"), ask("b"), ask("c")]
    with OpenAIServer(failures=FailurePlan(rate_500=1.0)) as server:
        got = asyncio.run(run_all(make_backend(server, retry=2), requests))
    assert sorted(i for i, _ in got.calls) == [0, 1, 2]
    for _, response in got.calls:
        assert response.text is None and not response.ok
        assert response.attempts == 3
        assert "HTTP 500" in response.error and "after 3 attempts" in response.error
        assert "The server had an error" in response.error  # the server's own message
    assert len(server.post_requests()) == 9


def test_client_errors_are_not_retried() -> None:
    def responder(body: dict[str, Any]) -> str:
        if "too long" in last_user_message(body):
            raise Reject(400, "This model's maximum context length is 8 tokens")
        return "fine"

    with OpenAIServer(responder) as server:
        got = asyncio.run(run_all(make_backend(server, retry=5), [ask("too long"), ask("ok")]))
    bad, good = got.by_index[0], got.by_index[1]
    assert good.text == "fine"
    assert bad.text is None and bad.attempts == 1
    assert bad.error == (
        "the prompt is longer than the model's context (the limit is 8); not retried: "
        "HTTP 400 Bad Request: This model's maximum context length is 8 tokens"
    )
    assert len(server.post_requests()) == 2


def test_callbacks_arrive_one_by_one_while_others_are_in_flight() -> None:
    def responder(body: dict[str, Any]) -> str:
        return last_user_message(body)

    plan = FailurePlan(first_attempt="429", retry_after="0.5")
    with OpenAIServer(responder, failures=plan) as server:
        backend = make_backend(server, max_concurrency=8)
        # Warm up "quick" so that only "late" fails its first attempt.
        asyncio.run(run_all(backend, [ask("quick")]))
        got = asyncio.run(
            run_all(make_backend(server, max_concurrency=8), [ask("late"), ask("quick")])
        )
    order = [i for i, _ in got.calls]
    assert order == [1, 0]  # "quick" is delivered before "late" finishes its retry
    late_first, late_retry = [r for r in server.post_requests() if last_user_message(r.json) == "late"]
    assert (late_first.status, late_retry.status) == (429, 200)
    # Delivered before "late" was even sent again (the server's clock is this process's
    # time.monotonic), and "late" waited the Retry-After in between.
    assert got.times[0] < late_retry.arrived
    assert late_retry.arrived - late_first.done >= 0.48


def test_concurrency_limit_is_never_exceeded() -> None:
    requests = [ask(f"q{i}") for i in range(40)]
    with OpenAIServer(latency=0.05) as server:
        backend = make_backend(server, max_concurrency=5)
        asyncio.run(process_as_two_datasets(backend, requests))
        stats = server.stats()
    assert stats.n_completed == 40
    assert stats.max_in_flight == 5  # reached, never exceeded, across both process() calls


def test_unauthorised_raises_without_leaking_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-0123456789abcdef"
    monkeypatch.setenv("PROCTOR_TEST_KEY", wrong)
    caplog.set_level(logging.DEBUG)  # everything, httpx and httpcore included
    with OpenAIServer(api_key="sk-right", echo_key_in_errors=True) as server:
        backend = make_backend(server, api_key_env="PROCTOR_TEST_KEY", model="test-model")
        with pytest.raises(BackendError) as caught:
            asyncio.run(backend.start())
        assert server.requests[0].headers["authorization"] == f"Bearer {wrong}"
    message = str(caught.value)
    assert "401" in message and server.base_url in message and "$PROCTOR_TEST_KEY" in message
    assert wrong not in message
    assert wrong not in repr(backend) and wrong not in repr(backend.config)
    assert all(wrong not in r.getMessage() for r in caplog.records)


def test_unset_key_variable_is_named_on_401(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCTOR_UNSET_KEY", raising=False)
    with OpenAIServer(api_key="sk-right") as server:
        backend = make_backend(server, api_key_env="PROCTOR_UNSET_KEY")
        with pytest.raises(BackendError, match=r"\$PROCTOR_UNSET_KEY is not set"):
            asyncio.run(backend.start())
        assert "authorization" not in server.requests[0].headers


def test_key_from_config_is_sent_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-config-secret-987654321"
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(api_key=secret) as server:
        backend = ApiBackend(
            ApiModelConfig(api_base=server.base_url, api_key=secret), backoff_base=FAST
        )
        got = asyncio.run(run_all(backend, [ask("x")]))
    assert got.by_index[0].ok
    assert server.post_requests()[0].headers["authorization"] == f"Bearer {secret}"
    assert secret not in repr(backend) and secret not in str(backend.config)
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_revoked_key_during_a_run_raises_and_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-revoked-42424242"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(echo_key_in_errors=True) as server:
        backend = make_backend(server, model="test-model")

        async def scenario() -> None:
            await backend.start()
            server.app.api_key = "sk-the-new-one"  # the key is revoked after the preflight
            try:
                await backend.process([ask(f"q{i}") for i in range(10)], lambda i, r: None)
            finally:
                await backend.close()

        with pytest.raises(BackendError) as caught:
            asyncio.run(scenario())
    assert "401" in str(caught.value) and "$OPENAI_API_KEY" in str(caught.value)
    assert secret not in str(caught.value)
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = ApiBackend(ApiModelConfig(api_base=url))
    with pytest.raises(BackendError) as caught:
        asyncio.run(backend.start())
    message = str(caught.value)
    assert message.startswith(f"cannot reach {url}: ")
    assert "refused" in message and "is the server running?" in message


def test_not_an_http_url_is_a_clear_error() -> None:
    # Refused with the config, before any backend starts (a judge starts only after inference).
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"'localhost:8000/v1' is not an http\(s\) URL"):
        ApiModelConfig(api_base="localhost:8000/v1", model="m")
    # A config built without validation still meets the backend's own check.
    backend = ApiBackend(ApiModelConfig.model_construct(api_base="localhost:8000/v1", model="m"))
    with pytest.raises(BackendError, match="not an http"):
        asyncio.run(backend.start())


def test_missing_models_route_hints_at_v1() -> None:
    with OpenAIServer() as server:
        root = server.base_url.removesuffix("/v1")
        backend = ApiBackend(ApiModelConfig(api_base=root))
        with pytest.raises(BackendError, match=r"404.*did you mean .*/v1\?"):
            asyncio.run(backend.start())


def test_a_new_event_loop_gets_a_new_client() -> None:
    with OpenAIServer(answer_from_question) as server:
        backend = make_backend(server)
        asyncio.run(backend.start())
        for question in ("first loop", "second loop"):
            got = Collected()
            asyncio.run(backend.process([ask(question)], got))
            assert got.by_index[0].text == f"answer to {question}"
        asyncio.run(backend.close())


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, proctor.models.api; "
        "print(sorted(m for m in ('httpx', 'torch', 'transformers', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_credentials_in_the_url_become_basic_auth_and_stay_hidden() -> None:
    import base64

    with OpenAIServer() as server:
        url = server.base_url.replace("http://", "http://alice:s3cr%40t@")
        backend = ApiBackend(ApiModelConfig(api_base=url, api_key_env="PROCTOR_NO_SUCH_VAR"))
        got = asyncio.run(run_all(backend, [ask("x")]))
    assert got.by_index[0].ok
    expected = "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
    assert {r.headers.get("authorization") for r in server.requests} == {expected}
    assert backend.identity == f"api|{server.base_url}|test-model|chat"
    assert "s3cr" not in repr(backend)


def test_environment_proxies_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")  # nobody listens
    with OpenAIServer() as server:
        with pytest.raises(BackendError, match="refused"):
            asyncio.run(make_backend(server).start())
        assert server.requests == []  # the request went to the (dead) proxy
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        got = asyncio.run(run_all(make_backend(server), [ask("x")]))
    assert got.by_index[0].ok


def test_an_error_body_with_status_200_is_retried_then_reported() -> None:
    calls = {"n": 0}

    def responder(body: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] == 1 or "always" in last_user_message(body):
            raise Reject(200, "upstream overloaded")  # some proxies answer like this
        return "ok"

    with OpenAIServer(responder) as server:
        backend = make_backend(server, retry=1, max_concurrency=1)
        got = asyncio.run(run_all(backend, [ask("once"), ask("always")]))
    assert got.by_index[0].text == "ok" and got.by_index[0].attempts == 2
    failed = got.by_index[1]
    assert failed.text is None and failed.attempts == 2
    assert "upstream overloaded" in failed.error
