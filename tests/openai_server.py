"""A real OpenAI-compatible HTTP server for tests and benchmarks.

It is a plain ASGI app served by uvicorn on 127.0.0.1 (a random free port) in a
background thread:

    with OpenAIServer(responder=lambda body: "A", latency=0.01) as srv:
        srv.base_url        # http://127.0.0.1:PORT/v1
        srv.requests        # every request received (path, json, headers, timestamps)
        srv.stats()         # max in-flight requests, requests/s while busy

It answers GET /v1/models, POST /v1/chat/completions and POST /v1/completions
(with `echo` + `logprobs` through a pluggable `logprob_fn`), checks the bearer
key when `api_key` is set, and injects failures deterministically (a
`FailurePlan`): 429 with Retry-After, 500/503, timeouts, malformed bodies, at a
seeded rate or on the first attempt of each distinct request. GET /_stats and
POST /_reset expose the counters over HTTP (for a server in another process).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Sequence

Responder = Callable[[dict[str, Any]], "str | Withheld | Reply"]
"""Decides the completion text from the request JSON (or a Withheld answer, or a full Reply)."""

LogprobFn = Callable[[str], "tuple[Sequence[str], Sequence[int], Sequence[float | None]]"]
"""prompt -> (tokens, character offsets, log-probs with None first), as OpenAI's echo gives."""

FailureKind = Literal["429", "500", "503", "timeout", "malformed"]


@dataclass(frozen=True)
class Withheld:
    """Return from a responder for a 200 answer without text: `content: null` (chat) or
    `text: null` (completions), with this finish_reason and, if set, a `refusal`."""

    finish_reason: str = "content_filter"
    refusal: str | None = None


@dataclass(frozen=True)
class Reply:
    """Return from a responder for full control of a 200 answer, as a reasoning model's server
    gives it: the `text` of the content (None: `content: null`), the finish_reason (e.g.
    "length": cut off by the token limit), a separate `reasoning_content` field, other message
    fields (`reasoning`), and `reasoning_tokens` for `usage.completion_tokens_details` (None:
    not reported)."""

    text: str | None
    finish_reason: str = "stop"
    reasoning_content: str | None = None
    fields: tuple[tuple[str, Any], ...] = ()
    reasoning_tokens: int | None = None
    completion_tokens: int | None = None  # None: the words of content and the fields
    # The first token's alternatives as (token, log-probability): sent as OpenAI's
    # `choices[0].logprobs.content[0].top_logprobs` when the request asks for logprobs.
    top_logprobs: tuple[tuple[str, float], ...] | None = None


class Reject(Exception):
    """Raise from a responder to answer with an OpenAI error body and this status."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.code = code


@dataclass(frozen=True)
class FailurePlan:
    """Which POST requests fail, and how; deterministic for a given seed and arrival order.

    Each request draws one number from a seeded RNG: below `rate_429` it gets a
    429, then 500, then a timeout (the server sleeps `timeout_sleep` before
    answering), then a malformed body. With `first_attempt` set, the first
    request with a given JSON body fails that way, so every retry succeeds.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    first_attempt: FailureKind | None = None
    retry_after: str | None = (
        "0"  # Retry-After on 429/503: seconds or an HTTP date; None: no header
    )
    timeout_sleep: float = 5.0
    seed: int = 0


@dataclass
class RecordedRequest:
    """One request as the server saw it (times are time.monotonic() in the server's process)."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    arrived: float
    done: float | None = None
    status: int | None = None
    injected: str | None = None  # the failure injected into this request, if any
    query: str = ""  # the raw query string of the URL


@dataclass(frozen=True)
class ServerStats:
    """Counters over the POST (model) requests."""

    n_requests: int
    n_completed: int
    max_in_flight: int
    first_arrival: float | None
    last_done: float | None
    busy_s: float
    busy_rps: float  # completed requests / (last response - first arrival)
    # Mean seconds from a request's arrival to its answer sent, and the requests the server
    # held on average while busy (a client that keeps C in flight keeps about C here).
    mean_latency_s: float = 0.0
    mean_in_flight: float = 0.0


def last_user_message(body: dict[str, Any]) -> str:
    """The text a responder usually matches on: the last user message, or the prompt."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


_TOKEN = re.compile(r"\s*\S+|\s+")


def default_logprob_fn(prompt: str) -> tuple[list[str], list[int], list[float | None]]:
    """Whitespace-attached word tokens; log-prob of a token = -0.5 * its length (first: None)."""
    tokens = [m.group(0) for m in _TOKEN.finditer(prompt)]
    offsets: list[int] = []
    position = 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    logprobs: list[float | None] = [None] + [-0.5 * len(t) for t in tokens[1:]]
    return tokens, offsets, logprobs


def _error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _words(text: str) -> int:
    return len(text.split())


class OpenAIApp:
    """The ASGI application; all its state lives here (shared with the test thread under a lock)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        failures: FailurePlan | None = None,
        api_key: str | None = None,
        model_ids: Sequence[str] = ("test-model",),
        logprob_fn: LogprobFn | None = None,
        supports_echo: bool = True,
        shuffle_choices: bool = False,
        echo_key_in_errors: bool = False,
        record_bodies: bool = True,
        model_info: dict[str, dict[str, Any]] | None = None,
        trickle_s: float = 0.0,
        system_fingerprint: str | None = None,
    ) -> None:
        self.responder: Responder = responder or (lambda body: "A")
        self.latency = latency
        self.failures = failures
        self.api_key = api_key
        self.model_ids = list(model_ids)
        self.logprob_fn: LogprobFn = logprob_fn or default_logprob_fn
        self.supports_echo = supports_echo
        self.shuffle_choices = shuffle_choices
        self.echo_key_in_errors = echo_key_in_errors
        self.record_bodies = record_bodies
        # Per model id: fields that replace or add to its GET /v1/models entry
        # (root, created, owned_by, ...; a callable is called per reply); may be changed while
        # the server runs.
        self.model_info = dict(model_info or {})
        # > 0: model (POST) answers send their body one byte per trickle_s seconds.
        self.trickle_s = trickle_s
        self.system_fingerprint = system_fingerprint
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget recorded requests, counters and the failure plan's progress."""
        with self._lock:
            self._records: list[RecordedRequest] = []
            self._in_flight = 0
            self._max_in_flight = 0
            self._seen: set[str] = set()
            self._rng = random.Random(self.failures.seed if self.failures else 0)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def stats(self) -> ServerStats:
        with self._lock:
            posts = [r for r in self._records if r.method == "POST"]
            max_in_flight = self._max_in_flight
        done = [r.done for r in posts if r.done is not None]
        first = min((r.arrived for r in posts), default=None)
        last = max(done, default=None)
        busy = (last - first) if first is not None and last is not None else 0.0
        held = sum(r.done - r.arrived for r in posts if r.done is not None)
        return ServerStats(
            n_requests=len(posts),
            n_completed=len(done),
            max_in_flight=max_in_flight,
            first_arrival=first,
            last_done=last,
            busy_s=busy,
            busy_rps=len(done) / busy if busy > 0 else 0.0,
            mean_latency_s=held / len(done) if done else 0.0,
            mean_in_flight=held / busy if busy > 0 else 0.0,
        )

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        method, path = scope["method"], scope["path"]
        if path == "/_stats":
            await self._send(send, 200, asdict(self.stats()))
            return
        if path == "/_reset":
            self.reset()
            await self._send(send, 200, {"ok": True})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest(
            method=method,
            path=path,
            json=body if self.record_bodies else None,
            headers=headers,
            arrived=time.monotonic(),
            query=scope.get("query_string", b"").decode("latin-1"),
        )
        with self._lock:
            self._records.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        status = 500
        try:
            status, payload, extra = await self._handle(method, path, headers, body, record)
            trickle = self.trickle_s if method == "POST" else 0.0
            status = await self._send(send, status, payload, extra, trickle)
        finally:
            with self._lock:
                self._in_flight -= 1
                record.done = time.monotonic()
                record.status = status

    async def _send(
        self,
        send: Any,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        trickle_s: float = 0.0,
    ) -> int:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        head = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ]
        head += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": head})
        if trickle_s > 0:
            try:
                for i in range(len(data)):  # one byte at a time: alive, but never done in time
                    chunk = data[i : i + 1]
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await asyncio.sleep(trickle_s)
                await send({"type": "http.response.body", "body": b""})
            except (OSError, asyncio.CancelledError):  # the client gave up, or the server stops
                pass
            return status
        await send({"type": "http.response.body", "body": data})
        return status

    # -------------------------------------------------------------- routing

    async def _handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        record: RecordedRequest,
    ) -> tuple[int, Any, dict[str, str]]:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            given = headers.get("authorization", "").removeprefix("Bearer ")
            message = "Incorrect API key provided"
            if self.echo_key_in_errors:
                message += f": {given}"
            return 401, _error_body(message, "invalid_request_error", "invalid_api_key"), {}
        route = (method, path.rstrip("/"))
        if route == ("GET", "/v1/models"):
            data = [
                {
                    "id": m,
                    "object": "model",
                    "created": 0,
                    "owned_by": "proctor-tests",
                    # A callable value is evaluated per reply (vLLM stamps `created` with the time).
                    **{k: v() if callable(v) else v for k, v in self.model_info.get(m, {}).items()},
                }
                for m in self.model_ids
            ]
            return 200, {"object": "list", "data": data}, {}
        if route not in (("POST", "/v1/chat/completions"), ("POST", "/v1/completions")):
            return 404, _error_body(f"no route {method} {path}", "invalid_request_error"), {}
        if not isinstance(body, dict):
            return 400, _error_body("the body must be a JSON object", "invalid_request_error"), {}
        if body.get("model") not in self.model_ids:
            message = f"The model `{body.get('model')}` does not exist"
            return 404, _error_body(message, "invalid_request_error", "model_not_found"), {}

        injected = self._injected_failure(body)
        record.injected = injected
        plan = self.failures
        if injected in ("429", "503"):
            extra = (
                {"retry-after": plan.retry_after} if plan and plan.retry_after is not None else {}
            )
            status = int(injected)
            message = "Rate limit reached" if status == 429 else "Service unavailable"
            return status, _error_body(message, "requests", "rate_limit_exceeded"), extra
        if injected == "500":
            return 500, _error_body("The server had an error", "server_error"), {}
        if injected == "timeout":
            assert plan is not None
            await asyncio.sleep(plan.timeout_sleep)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if injected == "malformed":
            return 200, b'{"id": "cmpl-broken", "choices": [', {}

        try:
            if path.rstrip("/").endswith("/chat/completions"):
                return 200, self._chat(body), {}
            return 200, self._completions(body), {}
        except Reject as exc:
            body = _error_body(exc.message, "invalid_request_error", exc.code)
            return exc.status, body, exc.headers

    def _injected_failure(self, body: dict[str, Any]) -> str | None:
        plan = self.failures
        if plan is None:
            return None
        with self._lock:
            if plan.first_attempt is not None:
                key = json.dumps(body, sort_keys=True)
                if key not in self._seen:
                    self._seen.add(key)
                    return plan.first_attempt
            draw = self._rng.random()
        for kind, rate in (
            ("429", plan.rate_429),
            ("500", plan.rate_500),
            ("timeout", plan.rate_timeout),
            ("malformed", plan.rate_malformed),
        ):
            if draw < rate:
                return kind
            draw -= rate
        return None

    # ---------------------------------------------------------- endpoints

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Reject(400, "'messages' must be a non-empty list")
        answer = self.responder(body)
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        finish_reason = "stop"
        text = answer if isinstance(answer, str) else ""
        details: dict[str, Any] = {}
        if isinstance(answer, Withheld):
            message["content"] = None
            if answer.refusal is not None:
                message["refusal"] = answer.refusal
            finish_reason = answer.finish_reason
        if isinstance(answer, Reply):
            message["content"] = answer.text
            fields = dict(answer.fields)
            if answer.reasoning_content is not None:
                fields["reasoning_content"] = answer.reasoning_content
            message.update(fields)
            finish_reason = answer.finish_reason
            text = " ".join([answer.text or "", *(str(v) for v in fields.values())])
            if answer.reasoning_tokens is not None:
                details = {"completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens}}
        completion_tokens = _words(text)
        if isinstance(answer, Reply) and answer.completion_tokens is not None:
            completion_tokens = answer.completion_tokens
        prompt_tokens = sum(_words(str(m.get("content", ""))) for m in messages)
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason}
        if isinstance(answer, Reply) and answer.top_logprobs is not None and body.get("logprobs"):
            top = [{"token": t, "logprob": lp} for t, lp in answer.top_logprobs[: body.get("top_logprobs") or 0]]
            first = top[0] if top else {"token": answer.text or "", "logprob": 0.0}
            choice["logprobs"] = {"content": [{**first, "top_logprobs": top}]}
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            **self._fingerprint(),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                **details,
            },
        }

    def _fingerprint(self) -> dict[str, Any]:
        fingerprint = self.system_fingerprint
        return {} if fingerprint is None else {"system_fingerprint": fingerprint}

    def _completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise Reject(400, "'prompt' must be a string or a list of strings")
        echo = bool(body.get("echo"))
        want_logprobs = body.get("logprobs") is not None
        if echo and not self.supports_echo:
            raise Reject(400, "echo is not supported by this server")
        max_tokens = body.get("max_tokens", 16)
        choices = []
        prompt_tokens = completion_tokens = 0
        for index, one in enumerate(prompts):
            answer = "" if max_tokens == 0 else self.responder({**body, "prompt": one})
            generated = answer if isinstance(answer, str) else ""
            choice: dict[str, Any] = {
                "index": index,
                "text": (one if echo else "") + generated,
                "logprobs": None,
                "finish_reason": "length" if max_tokens == 0 else "stop",
            }
            if isinstance(answer, Withheld):
                choice["text"] = None
                choice["finish_reason"] = answer.finish_reason
            if isinstance(answer, Reply):
                generated = answer.text or ""
                choice["text"] = (one if echo else "") + generated
                choice["finish_reason"] = answer.finish_reason
            if want_logprobs and echo:
                tokens, offsets, logprobs = self.logprob_fn(one)
                choice["logprobs"] = {
                    "tokens": list(tokens),
                    "token_logprobs": list(logprobs),
                    "text_offset": list(offsets),
                    "top_logprobs": None,
                }
            choices.append(choice)
            prompt_tokens += _words(one)
            completion_tokens += _words(generated)
        if self.shuffle_choices:
            # Clients must map choices by `index`, not by position.
            choices.reverse()
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            **self._fingerprint(),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class OpenAIServer:
    """Runs an OpenAIApp with uvicorn on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **app_options: Any,
    ) -> None:
        self.app = OpenAIApp(responder, **app_options)
        self.host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- state, forwarded from the app
    @property
    def requests(self) -> list[RecordedRequest]:
        return self.app.requests

    def post_requests(self) -> list[RecordedRequest]:
        """The model requests (POST), in arrival order."""
        return [r for r in self.app.requests if r.method == "POST"]

    def stats(self) -> ServerStats:
        return self.app.stats()

    def reset(self) -> None:
        self.app.reset()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    # -- lifecycle
    def start(self) -> OpenAIServer:
        import uvicorn

        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when
        # the listening socket says TCP; without it Nagle + delayed ACKs add 40 ms per response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="error",
            access_log=False,
            ws="none",
            backlog=4096,
            timeout_keep_alive=60,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="openai-test-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test OpenAI server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        # force_exit: do not wait for requests still sleeping in an injected timeout.
        self._server.should_exit = True
        self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port() -> int:
    """A port that was free a moment ago (for tests that need a closed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


__all__ = [
    "FailurePlan",
    "OpenAIApp",
    "OpenAIServer",
    "RecordedRequest",
    "Reject",
    "ServerStats",
    "Withheld",
    "Reply",
    "default_logprob_fn",
    "free_port",
    "last_user_message",
]
