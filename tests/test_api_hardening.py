"""ApiBackend hardening: identity, withheld answers, endpoint URLs, hopeless errors, deadlines,
secrets and terminal safety -- against the real OpenAI-compatible test server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from openai_server import OpenAIServer, Reject, Withheld, last_user_message
from proctor.config.schema import ApiModelConfig
from proctor.config.secrets import MASK, mask_auth, redact_argv
from proctor.core import Message, Request, Response
from proctor.errors import BackendError
from proctor.models.api import ApiBackend

FAST = 0.001


def backend_for(api_base: str, revision: str | None = None, **options: Any) -> ApiBackend:
    config = ApiModelConfig(api_base=api_base, **options)
    if revision is not None:
        if "revision" in ApiModelConfig.model_fields:
            config = ApiModelConfig(api_base=api_base, revision=revision, **options)
        else:  # the schema field is not there yet: the backend reads it with getattr
            object.__setattr__(config, "revision", revision)
    return ApiBackend(config, backoff_base=FAST)


def ask(question: str) -> Request:
    return Request(kind="generate", messages=(Message("user", question),))


async def answers(backend: ApiBackend, requests: list[Request]) -> dict[int, Response]:
    got: dict[int, Response] = {}
    await backend.start()
    try:
        await backend.process(requests, got.__setitem__)
    finally:
        await backend.close()
    return got


def started_identity(backend: ApiBackend) -> str:
    asyncio.run(backend.start())
    asyncio.run(backend.close())
    return backend.identity


# --- 1: the identity follows the checkpoint the server reports --------------------------


def test_identity_changes_with_the_checkpoint_behind_the_name() -> None:
    info = {"root": "/ckpt/qwen-step-1000", "created": 1_700_000_000, "owned_by": "vllm"}
    with OpenAIServer(model_info={"test-model": info}) as server:
        first = started_identity(backend_for(server.base_url))
        again = started_identity(backend_for(server.base_url))
        # The server now serves another checkpoint under the same name.
        server.app.model_info = {"test-model": {**info, "root": "/ckpt/qwen-step-2000"}}
        second = started_identity(backend_for(server.base_url))
        server.app.model_info = {"test-model": {**info, "created": 1_700_086_400}}
        third = started_identity(backend_for(server.base_url))
    base = f"api|{server.base_url}|test-model|chat"
    assert first == again == f"{base}|server:root=/ckpt/qwen-step-1000,created=1700000000"
    assert second == f"{base}|server:root=/ckpt/qwen-step-2000,created=1700000000"
    assert third == f"{base}|server:root=/ckpt/qwen-step-1000,created=1700086400"


def test_a_created_stamped_per_reply_is_not_part_of_the_identity() -> None:
    # vLLM stamps every /models reply with the current time: it must not make each run a miss.
    stamp = {"root": "/m", "created": lambda: int(time.time())}
    with OpenAIServer(model_info={"test-model": stamp}) as server:
        identity = started_identity(backend_for(server.base_url))
    assert identity == f"api|{server.base_url}|test-model|chat|server:root=/m"


def test_a_recent_but_steady_created_is_kept() -> None:
    # A checkpoint copied in a minute ago (proctor serve, Ollama: created = its mtime) is near the
    # clock too; dropping it would give the previous checkpoint's cached answers to this one.
    just_now = int(time.time()) - 60
    with OpenAIServer(model_info={"test-model": {"root": "/m", "created": just_now}}) as server:
        identity = started_identity(backend_for(server.base_url))
    assert identity == f"api|{server.base_url}|test-model|chat|server:root=/m,created={just_now}"


def test_a_published_fingerprint_is_the_identity_and_answers_must_match_it() -> None:
    info = {"test-model": {"root": "/m", "fingerprint": "fp_one"}}
    with OpenAIServer(model_info=info, system_fingerprint="fp_one") as server:
        assert started_identity(backend_for(server.base_url)).endswith("|server:fingerprint=fp_one,root=/m")
        assert asyncio.run(answers(backend_for(server.base_url), [ask("x")]))[0].ok
        # The server swaps its model under the same name mid-run: stop, never record its answers.
        server.app.system_fingerprint = "fp_two"
        with pytest.raises(BackendError, match="system_fingerprint fp_two, but GET /models said fp_one"):
            asyncio.run(answers(backend_for(server.base_url), [ask("y")]))


def test_revision_is_part_of_the_identity_and_silence_is_noted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with OpenAIServer() as server:  # reports created=0, owned_by only: nothing on the checkpoint
        with caplog.at_level(logging.INFO, logger="proctor.models.api"):
            plain = started_identity(backend_for(server.base_url))
        warned = [r.getMessage() for r in caplog.records if "says nothing" in r.getMessage()]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="proctor.models.api"):
            r2 = started_identity(backend_for(server.base_url, revision="ckpt-2"))
        assert not any("says nothing" in r.getMessage() for r in caplog.records)
    assert plain == f"api|{server.base_url}|test-model|chat"
    assert r2 == f"api|{server.base_url}|test-model|chat|revision:ckpt-2"
    assert len(warned) == 1 and "revision" in warned[0] and "'test-model'" in warned[0]
    assert "within this run only" in warned[0]


def test_system_fingerprints_are_collected() -> None:
    with OpenAIServer(system_fingerprint="fp_44709d6fcb") as server:
        backend = backend_for(server.base_url)
        got = asyncio.run(answers(backend, [ask("a"), ask("b")]))
    assert got[0].text == "A" and backend.fingerprints == {"fp_44709d6fcb"}


# --- 6: withheld answers are answers, with a reason --------------------------------------


def test_filtered_and_refused_answers_are_empty_texts_with_a_reason() -> None:
    def responder(body: dict[str, Any]) -> str | Withheld:
        question = last_user_message(body)
        if question == "filtered":
            return Withheld("content_filter")
        if question == "refused":
            return Withheld("stop", refusal="I can't help with that.")
        if question == "null":
            return Withheld("stop")  # content: null without a refusal
        if question == "azure-prompt-filter":
            raise Reject(400, "The prompt was filtered", code="content_filter")
        return "fine"

    questions = ["filtered", "refused", "null", "azure-prompt-filter", "ok"]
    with OpenAIServer(responder) as server:
        got = asyncio.run(answers(backend_for(server.base_url, retry=3), [ask(q) for q in questions]))
        posts = server.post_requests()
    assert [(got[i].text, got[i].finish_reason, got[i].error, got[i].attempts) for i in range(5)] == [
        ("", "content_filter", None, 1),
        ("", "refused", None, 1),
        ("", "content_filter", None, 1),
        ("", "content_filter", None, 1),
        ("fine", "stop", None, 1),
    ]
    assert len(posts) == 5  # none was retried


def test_filtered_completion_text_null_is_an_empty_answer() -> None:
    with OpenAIServer(lambda body: Withheld("content_filter")) as server:
        backend = backend_for(server.base_url, api_type="completions", retry=3)
        got = asyncio.run(answers(backend, [Request(kind="generate", prompt="Q: x\nA:")]))
        assert len(server.post_requests()) == 1
    assert (got[0].text, got[0].finish_reason, got[0].error) == ("", "content_filter", None)


# --- 12: an endpoint pasted into api_base -------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "api_type", "path"),
    [
        ("/chat/completions", "chat", "/v1/chat/completions"),
        ("/chat/completions/", "chat", "/v1/chat/completions"),
        ("/completions", "completions", "/v1/completions"),
    ],
)
def test_endpoint_suffix_is_stripped_with_a_note(
    suffix: str, api_type: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with OpenAIServer() as server:
        url = server.base_url.replace("http://", "http://bob:pa55word@") + suffix
        backend = backend_for(url, api_type=api_type, api_key_env="PROCTOR_NO_SUCH_VAR")
        request = ask("x") if api_type == "chat" else Request(kind="generate", prompt="x")
        with caplog.at_level(logging.WARNING, logger="proctor.models.api"):
            got = asyncio.run(answers(backend, [request]))
        paths = [(r.method, r.path) for r in server.requests]
    assert got[0].text == "A"
    assert paths == [("GET", "/v1/models"), ("POST", path)]
    notes = [r.getMessage() for r in caplog.records if "ends with the endpoint" in r.getMessage()]
    assert notes == [
        f"api_base ends with the endpoint {suffix.rstrip('/')}; using {server.base_url} "
        f"(proctor adds {suffix.rstrip('/')} itself)"
    ]
    assert all("pa55word" not in r.getMessage() for r in caplog.records)
    assert backend.identity == f"api|{server.base_url}|test-model|{api_type}"


# --- 20: the query of api_base, and credentials ------------------------------------------


def test_query_of_api_base_is_kept_on_every_endpoint_and_in_the_identity() -> None:
    with OpenAIServer() as server:
        url = server.base_url + "?api-version=2024-02-01&api-key=sekret-123"
        backend = backend_for(url)
        loglikelihood = Request(kind="loglikelihood", context="Q", continuations=(" A",))
        got = asyncio.run(answers(backend, [ask("x"), loglikelihood]))
        seen = sorted((r.path, r.query) for r in server.requests)
    assert got[0].text == "A" and got[1].loglikelihoods == (-1.0,)
    query = "api-version=2024-02-01&api-key=sekret-123"
    assert seen == [("/v1/chat/completions", query), ("/v1/completions", query), ("/v1/models", query)]
    assert backend.identity == f"api|{server.base_url}?api-version=2024-02-01|test-model|chat"
    assert "sekret" not in repr(backend)


def test_basic_credentials_echoed_by_the_server_never_reach_messages(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PROCTOR_NO_SUCH_VAR", raising=False)
    caplog.set_level(logging.DEBUG)
    token = base64.b64encode(b"alice:s3cr@t").decode()
    with OpenAIServer(api_key="sk-right", echo_key_in_errors=True) as server:
        url = server.base_url.replace("http://", "http://alice:s3cr%40t@")
        backend = backend_for(url, api_key_env="PROCTOR_NO_SUCH_VAR", model="test-model")
        with pytest.raises(BackendError) as caught:
            asyncio.run(backend.start())
        sent = server.requests[0].headers["authorization"]
    assert sent == f"Basic {token}"  # sent to the server, as asked
    message = str(caught.value)
    assert "401" in message and "(Incorrect API key provided: Basic ***)" in message
    for secret in (token, token.rstrip("="), "s3cr@t", "s3cr%40t"):
        assert secret not in message
        assert all(secret not in r.getMessage() for r in caplog.records)


def test_secrets_masks_basic_and_bearer_values() -> None:
    assert mask_auth("Authorization: Basic YWxpY2U6czNjckB0") == f"Authorization: Basic {MASK}"
    assert mask_auth("got bearer sk-abc.def_123 here") == f"got bearer {MASK} here"
    assert mask_auth("Basic auth is off") == "Basic auth is off"  # words, not credentials
    assert mask_auth("Basic YTpi") == f"Basic {MASK}"  # base64 of "a:b"
    argv = ["proctor", "-H", "Authorization: Basic YWxpY2U6czNjckB0", "--api-base",
            "http://alice:pw@h/v1?api-key=k1&api-version=2"]
    assert redact_argv(argv) == [
        "proctor", "-H", f"Authorization: Basic {MASK}", "--api-base",
        f"http://alice:{MASK}@h/v1?api-key={MASK}&api-version=2",
    ]


# --- 14: errors that never succeed --------------------------------------------------------


def test_a_model_the_server_does_not_serve_stops_at_the_first_request() -> None:
    with OpenAIServer(model_ids=["alpha", "beta"]) as server:
        backend = backend_for(server.base_url, model="gamma", retry=5, max_concurrency=1)
        with pytest.raises(BackendError) as caught:
            asyncio.run(answers(backend, [ask(f"q{i}") for i in range(6)]))
        posts = server.post_requests()
    assert len(posts) == 1  # neither retried nor repeated for the other requests
    assert str(caught.value) == (
        f"{server.base_url}/chat/completions answered HTTP 404: model 'gamma' is not served "
        "there (The model `gamma` does not exist); it serves alpha, beta; "
        "set the model name to one of them"
    )


def test_a_prompt_over_the_context_fails_once_naming_the_lengths() -> None:
    said = (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        "(4000 in the messages, 1000 in the completion). Please reduce the length."
    )

    def responder(body: dict[str, Any]) -> str:
        if last_user_message(body) == "long":
            raise Reject(400, said)
        return "fine"

    with OpenAIServer(responder) as server:
        got = asyncio.run(answers(backend_for(server.base_url, retry=5), [ask("long"), ask("ok")]))
        posts = server.post_requests()
    assert got[1].text == "fine"
    bad = got[0]
    assert bad.text is None and bad.attempts == 1 and len(posts) == 2
    assert bad.error == (
        "the prompt is longer than the model's context (5000 tokens, the limit is 4096); "
        f"not retried: HTTP 400 Bad Request: {said}"
    )


def test_context_length_on_a_scoring_request_is_not_called_missing_logprobs() -> None:
    def logprob_fn(prompt: str) -> Any:
        raise AssertionError("not reached")

    with OpenAIServer() as server:
        original = server.app._completions

        def too_long(body: dict[str, Any]) -> dict[str, Any]:
            if body.get("echo"):
                raise Reject(400, "this model's maximum context length is 512 tokens, "
                             "but the prompt has 900 tokens; shorten the prompt",
                             code="context_length_exceeded")
            return original(body)

        server.app._completions = too_long  # type: ignore[method-assign]
        request = Request(kind="loglikelihood", context="Q", continuations=(" A",))
        got = asyncio.run(answers(backend_for(server.base_url, retry=3), [request]))
        assert len(server.post_requests()) == 1
    assert got[0].error is not None
    assert got[0].error.startswith(
        "the prompt is longer than the model's context (900 tokens, the limit is 512); not retried"
    )
    assert "does not return prompt log-probs" not in got[0].error


# --- 15: --timeout bounds the whole request -----------------------------------------------


def test_timeout_bounds_a_server_that_trickles_its_answer() -> None:
    # ~250 bytes at one byte every 0.2 s: about 50 s to answer, never 0.2 s of silence.
    with OpenAIServer(trickle_s=0.2) as server:
        backend = backend_for(server.base_url, timeout=1.5, retry=1)
        started = time.monotonic()
        got = asyncio.run(answers(backend, [ask("x")]))
        elapsed = time.monotonic() - started
        posts = server.post_requests()
    assert got[0].text is None and got[0].attempts == 2 and len(posts) == 2
    assert got[0].error == "no complete answer within 1.5 s (the timeout) (after 2 attempts)"
    assert elapsed < 2 * 1.5 + 4.0  # two attempts of 1.5 s, plus a generous margin


# --- 21: server text is escaped before it reaches a terminal -------------------------------


def test_control_characters_from_the_server_are_escaped() -> None:
    evil = "bad \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \u202eend"

    def responder(body: dict[str, Any]) -> str:
        raise Reject(400, evil)

    with OpenAIServer(responder) as server:
        got = asyncio.run(answers(backend_for(server.base_url, retry=0), [ask("x")]))
    error = got[0].error
    assert error == "HTTP 400 Bad Request: bad \\x1b[31mred\\x1b[0m \\x1b]0;pwned\\x07 \\u202eend"

    with OpenAIServer(model_ids=["evil\x1b[2Jmodel", "ok"]) as server:
        backend = backend_for(server.base_url, model="gamma")
        with pytest.raises(BackendError) as caught:
            asyncio.run(answers(backend, [ask("x")]))
    message = str(caught.value)
    assert "\x1b" not in message and "it serves evil\\x1b[2Jmodel, ok;" in message


def test_unknown_host_and_https_to_an_http_server_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proctor.cli import main

    for base, expected in (("http://no-such-host.invalid/v1", "host name not found"),):
        assert main(["run", "--api-base", base, "--datasets", "demo_gen", "-w", str(tmp_path), "--retry", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "-2" not in err
    with OpenAIServer() as server:
        https = server.base_url.replace("http://", "https://")
        assert main(["run", "--api-base", https, "--datasets", "demo_gen", "-w", str(tmp_path), "--retry", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TLS handshake failed" in err and "try http://" in err


def test_a_very_long_model_id_gets_a_short_unique_file_name() -> None:
    from proctor.core import path_part

    a, b = "m" * 300 + "-a", "m" * 300 + "-b"
    assert len(path_part(a).encode()) <= 200 and path_part(a) != path_part(b)
    assert path_part("Qwen/Qwen2.5-7B") == "Qwen_Qwen2.5-7B"  # short names unchanged
