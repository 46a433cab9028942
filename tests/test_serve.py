"""`proctor serve`: a real uvicorn server over the tiny transformers model, called over HTTP
with the official `openai` client (and raw httpx / sockets for what a client would not send)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from serve_helpers import running_server, served_model, served_model_process, serve_options

pytest.importorskip("fastapi")
pytest.importorskip("transformers")

from proctor.config.schema import HFModelConfig  # noqa: E402
from proctor.core import Message, Request  # noqa: E402
from proctor.errors import BackendError, ConfigError  # noqa: E402
from proctor.models.hf import HFBackend  # noqa: E402
from proctor.models.hf_spans import continuation_logprob  # noqa: E402
from proctor.serve import external  # noqa: E402
from proctor.serve.cli import add_arguments, run  # noqa: E402
from proctor.serve.prompter import load_chat_template  # noqa: E402
from proctor.serve.server import RunningServer  # noqa: E402

MODEL = "tiny"
MAX_SEQ_LEN = 512
QUESTIONS = [
    "What is the capital of France?",
    "Which of the following is a prime number?",
    "以下是中国关于计算机网络考试的单项选择题",
    "Let us think step by step.",
    "Water boils at one hundred degrees",
    "An algorithm is a finite sequence",
    "The derivative of a function",
    "路由器根据路由表转发数据包",
]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[RunningServer]:
    # A 50 ms batch window so that requests sent together reliably share a batch on a busy CI box.
    with running_server(
        tiny_model_dir, served_model_name=MODEL, max_batch_size=8, max_seq_len=MAX_SEQ_LEN, batch_wait_ms=50
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def direct(tiny_model_dir: Path) -> Iterator[HFBackend]:
    """The same model called directly, without HTTP: the reference for every served number."""
    backend = HFBackend(HFModelConfig(path=str(tiny_model_dir), max_seq_len=MAX_SEQ_LEN, batch_size=8))
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


def _chat(client: openai.OpenAI, content: str, **kw: Any) -> Any:
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def _assert_alive(server: RunningServer) -> None:
    """The server still answers a normal request."""
    assert httpx.get(server.base_url + "/health", timeout=10).json()["status"] == "ok"
    r = httpx.post(
        server.base_url + "/v1/completions",
        json={"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 2, "temperature": 0},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] is not None


# --- the OpenAI surface -------------------------------------------------------------


def test_models_list_the_served_name(client: openai.OpenAI, server: RunningServer) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    health = httpx.get(server.base_url + "/health").json()
    assert health["model"] == MODEL and health["max_batch_size"] == 8


def test_chat_equals_direct_generation(client: openai.OpenAI, direct: HFBackend, tiny_model_dir: Path) -> None:
    resp = _chat(client, QUESTIONS[0], max_tokens=10)
    ref = direct.run_requests(
        [Request(kind="generate", messages=(Message("user", QUESTIONS[0]),), max_tokens=10)]
    )[0]
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.model == MODEL
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == ref.text
    assert choice.finish_reason == ("length" if ref.completion_tokens == 10 else "stop")
    # Usage counts the tokens of the chat template's rendering, as the model saw them.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tok.apply_chat_template([{"role": "user", "content": QUESTIONS[0]}], tokenize=False,
                                       add_generation_prompt=True)
    assert resp.usage.prompt_tokens == len(tok(rendered, add_special_tokens=False)["input_ids"])
    assert resp.usage.prompt_tokens == ref.prompt_tokens
    assert resp.usage.completion_tokens == ref.completion_tokens
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_stream_matches_non_stream(client: openai.OpenAI, server: RunningServer) -> None:
    whole = _chat(client, QUESTIONS[1], max_tokens=12).choices[0]
    chunks = list(_chat(client, QUESTIONS[1], max_tokens=12, stream=True,
                        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == [whole.finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.object == "chat.completion.chunk" for c in chunks)

    # On the wire: SSE `data: {...}` events, ending with `data: [DONE]`.
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTIONS[1]}], "max_tokens": 12,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[1][6:])["choices"][0]["delta"]["content"] == whole.message.content


def test_completions_list_of_prompts_equal_direct(client: openai.OpenAI, direct: HFBackend) -> None:
    prompts = QUESTIONS[:3]
    resp = client.completions.create(model=MODEL, prompt=prompts, max_tokens=6, temperature=0)
    refs = direct.run_requests([Request(kind="generate", prompt=p, max_tokens=6) for p in prompts])
    assert resp.object == "text_completion"
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.text for c in resp.choices] == [r.text for r in refs]
    assert resp.usage.prompt_tokens == sum(r.prompt_tokens for r in refs)
    assert resp.usage.completion_tokens == sum(r.completion_tokens for r in refs)
    # One prompt, streamed.
    streamed = client.completions.create(model=MODEL, prompt=prompts[0], max_tokens=6, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == refs[0].text


def test_stop_strings_cut_the_text(client: openai.OpenAI) -> None:
    full = client.completions.create(model=MODEL, prompt=QUESTIONS[3], max_tokens=16, temperature=0).choices[0].text
    stop = next(ch for ch in full[2:] if ch not in "\ufffd")  # a real character past the start
    cut = client.completions.create(model=MODEL, prompt=QUESTIONS[3], max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_echo_logprobs_equal_direct_loglikelihood(client: openai.OpenAI, direct: HFBackend) -> None:
    context = "Question: Which of the following is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"
    continuations = (" A", " B", " C", " D", " 7, because it has no divisors", "答案：C")
    ref = direct.run_requests([Request(kind="loglikelihood", context=context, continuations=continuations)])[0]
    assert ref.ok, ref.error
    resp = client.completions.create(
        model=MODEL, prompt=[context + c for c in continuations], echo=True, logprobs=1, max_tokens=0
    )
    assert len(resp.choices) == len(continuations)
    for choice, c, expected, n_tokens in zip(resp.choices, continuations, ref.loglikelihoods,
                                             ref.continuation_lengths):
        lp = choice.logprobs
        assert choice.text == context + c
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == len(lp.top_logprobs)
        assert all(top == {tok: v} for tok, v, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]))
        total, count = continuation_logprob(lp.text_offset, lp.token_logprobs, len(context), len(context + c))
        assert total == pytest.approx(expected, abs=1e-5)
        assert count == n_tokens
    assert resp.usage.completion_tokens == 0


def test_echo_with_generation_scores_prompt_and_answer(client: openai.OpenAI) -> None:
    prompt = QUESTIONS[4]
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0).choices[0]
    echoed = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0, echo=True,
                                       logprobs=1).choices[0]
    assert echoed.text == prompt + plain.text
    offsets = echoed.logprobs.text_offset
    assert offsets == sorted(offsets) and offsets[-1] < len(echoed.text)
    assert all(v is not None and v <= 0 for v in echoed.logprobs.token_logprobs[1:])


# --- authentication -------------------------------------------------------------------


def test_api_key_is_required_when_set(tiny_model_dir: Path) -> None:
    with served_model(tiny_model_dir, served_model_name=MODEL, api_key="s3cret-key") as base_url:
        for key in ("wrong-key", "s3cret-key-but-longer"):
            bad = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                bad.models.list()
            assert info.value.status_code == 401
            assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
            assert "s3cret" not in str(info.value)
        no_header = httpx.post(base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert no_header.status_code == 401 and no_header.headers["www-authenticate"] == "Bearer"
        assert set(no_header.json()["error"]) == {"message", "type", "param", "code"}
        good = openai.OpenAI(base_url=base_url, api_key="s3cret-key", max_retries=0)
        assert [m.id for m in good.models.list().data] == [MODEL]
        assert _chat(good, "hi", max_tokens=2).choices[0].message.content is not None
        # Health checks (load balancers, the demo) need no key.
        assert httpx.get(base_url.removesuffix("/v1") + "/health").status_code == 200


def test_api_key_from_env_and_never_in_repr(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("PROCTOR_SERVE_API_KEY", "from-env-key")
    options = serve_options(tiny_model_dir)
    assert options.api_key == "from-env-key"
    assert "from-env-key" not in repr(options)
    assert serve_options(tiny_model_dir, api_key="flag-key").api_key == "flag-key"
    assert options.model_name == Path(tiny_model_dir).name


# --- bad requests ---------------------------------------------------------------------

_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
_LONG_PROMPT = " ".join(["router packets networks"] * 400)  # well over MAX_SEQ_LEN tokens

BAD_REQUESTS: list[tuple[str, str, Any, int, str | None, str | None]] = [
    # (id, path, body (dict, or raw bytes), status, param, code)
    ("unknown-model", "/v1/chat/completions", {**_CHAT, "model": "gpt-9"}, 404, "model", "model_not_found"),
    ("missing-messages", "/v1/chat/completions", {"model": MODEL}, 400, "messages", "invalid_value"),
    ("empty-messages", "/v1/chat/completions", {**_CHAT, "messages": []}, 400, "messages", "invalid_value"),
    ("bad-role", "/v1/chat/completions", {**_CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400,
     "messages", "invalid_value"),
    ("negative-max-tokens", "/v1/chat/completions", {**_CHAT, "max_tokens": -1}, 400, "max_tokens", "invalid_value"),
    ("n-0", "/v1/chat/completions", {**_CHAT, "n": 0}, 400, "n", "invalid_value"),
    ("n-2-stream", "/v1/chat/completions", {**_CHAT, "n": 2, "stream": True}, 400, "n", "invalid_value"),
    ("temperature-9", "/v1/chat/completions", {**_CHAT, "temperature": 9}, 400, "temperature", "invalid_value"),
    ("bad-json", "/v1/chat/completions", b'{"model": "tiny", "messages": [', 400, None, None),
    ("not-an-object", "/v1/completions", b"[1, 2]", 400, None, None),
    ("missing-prompt", "/v1/completions", {"model": MODEL}, 400, "prompt", "invalid_value"),
    ("empty-token-prompt", "/v1/completions", {"model": MODEL, "prompt": [[1, 2, 3], []]}, 400, "prompt", None),
    ("token-prompt-too-long", "/v1/completions", {"model": MODEL, "prompt": [[5] * 600], "max_tokens": 1}, 400,
     "prompt", "context_length_exceeded"),
    ("prompt-too-long", "/v1/completions", {"model": MODEL, "prompt": _LONG_PROMPT, "max_tokens": 1}, 400,
     "prompt", "context_length_exceeded"),
    ("chat-too-long", "/v1/chat/completions", {**_CHAT, "messages": [{"role": "user", "content": _LONG_PROMPT}]},
     400, "messages", "context_length_exceeded"),
    ("unknown-route", "/v1/embeddings", {"model": MODEL, "input": "x"}, 404, None, "not_found"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_openai_error_and_server_keeps_serving(
    server: RunningServer, case: tuple[str, str, Any, int, str | None, str | None]
) -> None:
    _, path, body, status, param, code = case
    url = server.base_url + path
    if isinstance(body, bytes):
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    else:
        r = httpx.post(url, json=body, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "\n" not in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    _assert_alive(server)


def test_openai_client_sees_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt=_LONG_PROMPT, max_tokens=1)
    assert "maximum context length is 512 tokens" in info.value.message
    assert client.completions.create(model=MODEL, prompt="ok", max_tokens=1).choices[0].text is not None


# --- batching -------------------------------------------------------------------------


async def _concurrent_chats(base_url: str, questions: list[str], max_tokens: int = 8) -> list[str]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120) as aclient:
        resps = await asyncio.gather(*(
            aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}],
                                            max_tokens=max_tokens, temperature=0)
            for q in questions
        ))  # fmt: skip
    return [r.choices[0].message.content or "" for r in resps]


def test_concurrent_requests_are_batched_and_equal_one_at_a_time(server: RunningServer,
                                                                 client: openai.OpenAI) -> None:
    questions = [f"{q} ({i})" for i, q in enumerate(QUESTIONS * 2)]  # 16 distinct prompts
    sequential = [_chat(client, q).choices[0].message.content for q in questions]
    before = server.stats
    together = asyncio.run(_concurrent_chats(server.base_url + "/v1", questions))
    after = server.stats
    batches = after["batches"] - before["batches"]
    assert after["requests"] - before["requests"] == 16
    assert batches <= 4, f"16 concurrent requests took {batches} backend calls"
    assert after["largest_batch"] <= 8
    assert together == sequential


def test_max_batch_size_one_runs_one_at_a_time(tiny_model_dir: Path) -> None:
    with running_server(tiny_model_dir, served_model_name=MODEL, max_batch_size=1) as srv:
        outputs = asyncio.run(_concurrent_chats(srv.base_url + "/v1", QUESTIONS[:4], max_tokens=4))
        stats = srv.stats
    assert len(outputs) == 4
    assert stats["batches"] == stats["requests"] == 4
    assert stats["largest_batch"] == 1


# --- clients that go away -------------------------------------------------------------


def _raw_post(port: int, path: str, body: dict[str, Any], declared_length: int | None = None) -> socket.socket:
    data = json.dumps(body).encode()
    length = declared_length if declared_length is not None else len(data)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode() + data
    )
    return sock


def test_disconnecting_clients_do_not_stall_others(tiny_model_dir: Path) -> None:
    # One at a time, so that a client who leaves is still queued when it goes.
    with running_server(tiny_model_dir, served_model_name=MODEL, max_batch_size=1) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
        long_chat = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story"}],
                     "max_tokens": 48, "temperature": 0}

        async def scenario() -> list[str]:
            others = asyncio.create_task(_concurrent_chats(srv.base_url + "/v1", QUESTIONS[:3], max_tokens=24))
            # Until the model runs the first of them (the rest queue behind it), not a fixed sleep:
            # on a busy box 50 ms may not be enough to send them.
            deadline = time.monotonic() + 60
            while srv.stats["requests"] < 1:
                assert time.monotonic() < deadline and not others.done(), "the other requests never ran"
                await asyncio.sleep(0.005)
            gone = [_raw_post(port, "/v1/chat/completions", long_chat) for _ in range(5)]
            streaming = _raw_post(port, "/v1/chat/completions", {**long_chat, "stream": True})
            half_sent = _raw_post(port, "/v1/completions", {"model": MODEL, "prompt": "x"}, declared_length=4096)
            await asyncio.sleep(0.1)
            for sock in [*gone, streaming]:
                sock.close()
            try:
                return await asyncio.wait_for(others, timeout=90)
            finally:
                half_sent.close()

        started = time.monotonic()
        outputs = asyncio.run(scenario())
        assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
        assert time.monotonic() - started < 90
        # The requests of clients that left before their turn were dropped, not run.
        deadline = time.monotonic() + 10
        while srv.stats["skipped"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.stats["skipped"] >= 1
        _assert_alive(srv)


# --- chat templates -------------------------------------------------------------------

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"


def test_chat_template_override(tiny_model_dir: Path, direct: HFBackend, tmp_path: Path) -> None:
    template_file = tmp_path / "tpl.jinja"
    template_file.write_text(TEMPLATE, encoding="utf-8")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTIONS[0]}]
    rendered = "system: Be brief.\nuser: " + QUESTIONS[0] + "\nassistant:"
    ref = direct.run_requests([Request(kind="generate", prompt=rendered, max_tokens=6)])[0]
    for template in (str(template_file), TEMPLATE):
        with served_model(tiny_model_dir, served_model_name=MODEL, chat_template=template,
                          max_seq_len=MAX_SEQ_LEN) as base_url:
            c = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
            resp = c.chat.completions.create(model=MODEL, messages=messages, max_tokens=6,  # type: ignore[arg-type]
                                             temperature=0)
        assert resp.choices[0].message.content == ref.text
        assert resp.usage.prompt_tokens == ref.prompt_tokens


def test_bad_chat_templates_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_chat_template(str(tmp_path / "missing.jinja"))
    with pytest.raises(ConfigError, match="not valid Jinja") as info:
        load_chat_template("{% for m in messages %}{{ m.content }}")
    assert "\n" not in str(info.value)
    wrapped = tmp_path / "tpl.json"
    wrapped.write_text(json.dumps({"chat_template": TEMPLATE}), encoding="utf-8")
    assert load_chat_template(str(wrapped)) == TEMPLATE


def test_base_model_chat_joins_messages(tmp_path: Path) -> None:
    from proctor.tiny_model import build_tiny_model

    base = build_tiny_model(tmp_path / "base", chat_template=False)
    with served_model(base, served_model_name=MODEL) as base_url:
        c = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        chat = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                                         max_tokens=4, temperature=0)
        plain = c.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    # Without a chat template the model sees the message text alone.
    assert chat.choices[0].message.content == plain.choices[0].text
    assert chat.usage.prompt_tokens == plain.usage.prompt_tokens


# --- the command line -----------------------------------------------------------------


def test_cli_serves_in_a_subprocess_and_stops_on_sigterm(tiny_model_dir: Path) -> None:
    key = "env-only-secret-123"
    with served_model_process(tiny_model_dir, env={"PROCTOR_SERVE_API_KEY": key},
                              served_model_name="demo-model") as (base_url, proc):
        c = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
        assert [m.id for m in c.models.list().data] == ["demo-model"]
        assert httpx.get(base_url + "/models").status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert key not in out and key not in err


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults() -> None:
    args = _parse(["/models/Qwen2.5-7B-Instruct/"])
    assert (args.host, args.port, args.max_batch_size, args.backend) == ("127.0.0.1", 23333, 32, "hf")
    assert serve_options("/models/Qwen2.5-7B-Instruct/").model_name == "Qwen2.5-7B-Instruct"


def test_missing_model_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        run(_parse([str(tmp_path / "nope"), "--port", "0"]))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="--max-batch-size"):
        run(_parse([str(tmp_path), "--max-batch-size", "0"]))


@pytest.mark.parametrize("engine", ["vllm", "lmdeploy"])
def test_external_engine_not_installed_is_a_clear_error(engine: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if external._installed(engine):
        pytest.skip(f"{engine} is installed here")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `lmdeploy` executable either
    with pytest.raises(BackendError, match=f"--backend {engine} needs") as info:
        run(_parse([str(tmp_path), "--backend", engine]))
    assert "\n" not in str(info.value) and "pip install" in str(info.value)


def test_external_engine_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the "is it installed" probe is bypassed; the command lines are the real ones.
    monkeypatch.setattr(external, "_installed", lambda module: True)
    monkeypatch.setattr(external.shutil, "which", lambda name: f"/usr/bin/{name}")
    opts = serve_options(tmp_path, port=8000, api_key="k-123", served_model_name="m", max_batch_size=16,
                         max_seq_len=4096, chat_template="{{ x }}", backend="vllm")
    vllm = external.external_command(opts)
    assert vllm.argv[1:3] == ("-m", "vllm.entrypoints.openai.api_server")
    assert ["--served-model-name", "m"] == list(vllm.argv[vllm.argv.index("--served-model-name"):][:2])
    assert "--max-num-seqs" in vllm.argv and "16" in vllm.argv and "--max-model-len" in vllm.argv
    assert "k-123" not in vllm.argv and vllm.env == {"VLLM_API_KEY": "k-123"}
    assert "k-123" not in repr(vllm)
    lmd = external.external_command(serve_options(tmp_path, port=8000, served_model_name="m", backend="lmdeploy",
                                                  max_seq_len=4096))
    assert lmd.argv[:4] == ("/usr/bin/lmdeploy", "serve", "api_server", str(tmp_path))
    assert "--server-port" in lmd.argv and "--session-len" in lmd.argv
    with pytest.raises(ConfigError, match="Jinja"):
        external.external_command(serve_options(tmp_path, backend="lmdeploy", chat_template="{{ x }}"))
