"""The backend for models behind an OpenAI-compatible HTTP API (async, on aiohttp)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from proctor.core import Request, Response
from proctor.errors import BackendError
from proctor.models.base import OnResponse
from proctor.models.hf_spans import continuation_start  # the shared rule; pure Python
from proctor.models.ratelimit import RateLimiter
from proctor.models.retry import (
    RETRY_AFTER_STATUSES,
    RETRY_STATUSES,
    RetryPolicy,
    parse_retry_after,
)
from proctor.models.slots import ConcurrencyLimit

if TYPE_CHECKING:  # aiohttp and pydantic are imported lazily: `proctor --help` must stay fast
    import ssl

    import aiohttp

    from proctor.config.schema import ApiModelConfig

logger = logging.getLogger(__name__)

_MAX_SERVER_MESSAGE = 300


class _Unusable(Exception):
    """A response that will not get better by asking again (recorded as failed, not retried)."""


@dataclass(frozen=True)
class _Failure:
    message: str
    retryable: bool
    retry_after: float | None = None


@dataclass(frozen=True)
class _Reply:
    """An HTTP answer read in full (what the parsing helpers need, whatever the client)."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass
class _LoopState:
    """What must be created inside the running event loop, once per backend and loop."""

    loop: asyncio.AbstractEventLoop
    slots: ConcurrencyLimit  # the concurrency limit, shared by every process() call
    limiter: RateLimiter | None
    session: aiohttp.ClientSession
    proxy: str | None  # chosen once from the environment (no lookup per request)
    urls: dict[str, Any] = field(default_factory=dict)  # yarl.URL parsed once per endpoint


def _display_url(url: str) -> str:
    """The URL minus credentials, query, fragment, default port and trailing '/'."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))


def _short_reason(exc: BaseException) -> str:
    """A few words on why a connection failed, from the deepest OS error the client wraps."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "host name not found"
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # asyncio words a refused connection "Connect call failed (...)"; errno is clearer.
            return (os.strerror(current.errno) if current.errno else str(current.strerror)).lower()
        current = current.__cause__ or current.__context__
    text = str(exc).strip()
    return text or type(exc).__name__


class ApiBackend:
    """A model behind an OpenAI-compatible API: /models, /chat/completions, /completions.

    All concurrent `process()` calls share one concurrency limit and one rate
    limiter, so several datasets run at once never exceed the model's limits.
    """

    def __init__(
        self,
        config: ApiModelConfig,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
    ) -> None:
        self.config = config
        self.name: str = config.abbr or config.model or "api-model"
        base = config.api_base.strip().rstrip("/")
        parts = urlsplit(base)
        # Credentials written in the URL become Basic auth (unless a key is set), never part
        # of the request URL, the identity or a message.
        self._url_credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
        self._base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self._display_base = _display_url(base)
        self._model: str | None = config.model
        self._retry = RetryPolicy(retries=config.retry, base=backoff_base, cap=backoff_cap)
        self._rng = random.Random()
        self._key, self._key_source = self._resolve_key()
        self._state: _LoopState | None = None
        self._started = False

    # ----------------------------------------------------------------- properties

    @property
    def identity(self) -> str:
        """'api|<base url>|<model id>|<api type>': secret-free, part of every cache key."""
        return f"api|{self._display_base}|{self._model}|{self.config.api_type}"

    @property
    def chat(self) -> bool:
        return self.config.api_type == "chat"

    @property
    def model_id(self) -> str | None:
        """The model id sent to the server (discovered by start() when not configured)."""
        return self._model

    def __repr__(self) -> str:
        return f"ApiBackend(name={self.name!r}, identity={self.identity!r})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Check the endpoint with one GET /models and discover the model id if needed."""
        parts = urlsplit(self._base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(
                f"api_base {self._base!r} is not an http(s) URL; "
                "write it like http://127.0.0.1:8000/v1"
            )
        state = self._loop_state()
        try:
            await self._preflight(state)
        except BaseException:
            await self.close()  # a failed start leaves no open connections behind
            raise
        self._started = True

    async def _preflight(self, state: _LoopState) -> None:
        """GET /models: is the endpoint there, does the key work, which model to use."""
        import aiohttp

        url = f"{self._base}/models"
        shown = f"{self._display_base}/models"
        try:
            async with state.slots.slot():
                resp = await self._exchange(state, "GET", url)
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise BackendError(
                f"cannot reach {self._display_base}: no answer within {self.config.timeout:g} s; "
                "is the server running?"
            ) from None
        except aiohttp.ClientError as exc:
            raise BackendError(
                f"cannot reach {self._display_base}: {self._redact(_short_reason(exc))}; "
                "is the server running?"
            ) from None
        if resp.status_code in (401, 403):
            raise BackendError(self._auth_message(resp, shown))
        ids = self._model_ids(resp)
        if ids is None:
            hint = ""
            if resp.status_code == 404 and not self._display_base.endswith("/v1"):
                hint = f" (did you mean {self._display_base}/v1?)"
            if self._model is None:
                raise BackendError(
                    f"cannot list the models of {shown}: HTTP {resp.status_code}"
                    f"{self._server_message_part(resp)}{hint}; set the model name explicitly"
                )
            # Some servers do not implement /models; the endpoint answered, so go on.
            logger.warning(
                "%s answered HTTP %s%s; using model %r as configured",
                shown,
                resp.status_code,
                hint,
                self._model,
            )
        elif self._model is None:
            if not ids:
                raise BackendError(f"{shown} lists no models; set the model name explicitly")
            self._model = ids[0]
            if len(ids) > 1:
                logger.warning(
                    "%s lists %d models (%s); using the first, %r; set the model name to choose",
                    shown,
                    len(ids),
                    ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else ""),
                    ids[0],
                )
            if not self.config.abbr:
                self.name = self._model
        elif ids and self._model not in ids:
            logger.warning(
                "%s does not list model %r (it lists %s); sending requests anyway",
                shown,
                self._model,
                ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else ""),
            )

    async def close(self) -> None:
        state, self._state = self._state, None
        if state is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is always awaited
            running = None
        if running is state.loop:
            await state.session.close()
        else:
            _abandon(state)

    # ------------------------------------------------------------------- requests

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        """Answer all requests at once; on_response(i, response) once per index as each ends."""
        if not self._started:
            raise RuntimeError("ApiBackend.process() called before start()")
        state = self._loop_state()

        pending = iter(enumerate(requests))

        async def worker() -> None:
            # Workers share one iterator, so each request is taken exactly once; a bounded
            # number of workers keeps a 100k-request call from making 100k tasks at once.
            for index, request in pending:
                on_response(index, await self._answer(state, request))

        workers = min(len(requests), self.config.max_concurrency)
        tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A BackendError (bad key) or cancellation: stop everything still running.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _answer(self, state: _LoopState, request: Request) -> Response:
        """Send one request with retries; never raises except when the whole model is unusable."""
        try:
            path, body, parse = self._plan(request)
        except _Unusable as exc:
            return Response(error=str(exc), attempts=0)
        if path is None:  # nothing to ask (a loglikelihood request without continuations)
            return parse({})
        url = f"{self._base}{path}"
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        logprobs = bool(body.get("echo"))
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            async with state.slots.slot():
                if state.limiter is not None:
                    await state.limiter.acquire()
                sent = time.perf_counter()
                outcome = await self._attempt(state, url, content, parse, logprobs)
                latency = time.perf_counter() - sent
            if isinstance(outcome, Response):
                return _with(outcome, latency_s=latency, attempts=attempt)
            if not outcome.retryable or attempt >= self._retry.max_attempts:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                logger.debug("request to %s failed%s: %s", path, tries, outcome.message)
                return Response(
                    error=f"{outcome.message}{tries}",
                    attempts=attempt,
                    latency_s=time.perf_counter() - started,
                )
            delay = self._retry.delay(attempt, outcome.retry_after, self._rng)
            logger.debug(
                "retrying %s (attempt %d of %d) in %.2f s: %s",
                path,
                attempt + 1,
                self._retry.max_attempts,
                delay,
                outcome.message,
            )
            # The concurrency slot is released while waiting, so others keep going.
            await asyncio.sleep(delay)

    @staticmethod
    async def _exchange(
        state: _LoopState, method: str, url: str, content: bytes | None = None
    ) -> _Reply:
        """One request on the shared session, body read in full; redirects are not followed."""
        import yarl

        parsed = state.urls.get(url)
        if parsed is None:
            parsed = state.urls[url] = yarl.URL(url)
        async with state.session.request(
            method, parsed, data=content, proxy=state.proxy, allow_redirects=False
        ) as response:
            body = await response.read()
            return _Reply(response.status, response.reason or "", response.headers, body)

    async def _attempt(
        self,
        state: _LoopState,
        url: str,
        content: bytes,
        parse: Callable[[Any], Response],
        logprobs: bool,
    ) -> Response | _Failure:
        """One HTTP exchange: a Response, or a _Failure saying whether to retry."""
        import aiohttp

        try:
            resp = await self._exchange(state, "POST", url, content)
        except TimeoutError:  # aiohttp's ServerTimeoutError is one
            return _Failure(f"no answer within {self.config.timeout:g} s", retryable=True)
        except aiohttp.ClientError as exc:
            return _Failure(f"connection error: {self._redact(_short_reason(exc))}", retryable=True)
        status = resp.status_code
        if status in (401, 403):
            raise BackendError(
                self._auth_message(resp, url.replace(self._base, self._display_base))
            )
        if status >= 300:
            message = (
                f"HTTP {status} {resp.reason_phrase}{self._server_message_part(resp)}".rstrip()
            )
            if logprobs and 400 <= status < 500 and status != 429:
                message = (
                    f"the endpoint {self._display_base}/completions does not return prompt "
                    f"log-probs (echo=true, logprobs=1, max_tokens=0): {message}"
                )
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
            return _Failure(message, retryable=status in RETRY_STATUSES, retry_after=retry_after)
        try:
            data = json.loads(resp.content)
        except ValueError:
            return _Failure(f"HTTP {status} with a body that is not JSON", retryable=True)
        if isinstance(data, dict) and "choices" not in data and data.get("error"):
            # Some proxies answer 200 with an error body; it is worth another try.
            error = data["error"]
            said = error.get("message") if isinstance(error, dict) else error
            return _Failure(f"HTTP {status} with an error: {self._redact(str(said))}", True)
        try:
            return parse(data)
        except _Unusable as exc:
            return _Failure(str(exc), retryable=False)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            return _Failure(f"malformed response ({type(exc).__name__}: {exc})", retryable=True)

    # ---------------------------------------------------------- request building

    def _plan(
        self, request: Request
    ) -> tuple[str | None, dict[str, Any], Callable[[Any], Response]]:
        """The path, JSON body and response parser of one request."""
        if request.kind == "loglikelihood":
            return self._plan_loglikelihood(request)
        if request.kind != "generate":
            raise _Unusable(f"unknown request kind {request.kind!r}")
        body: dict[str, Any] = {"model": self._model}
        if self.chat:
            if request.messages is not None:
                body["messages"] = [
                    {"role": m.role, "content": m.content} for m in request.messages
                ]
            elif request.prompt is not None:
                body["messages"] = [{"role": "user", "content": request.prompt}]
            else:
                raise _Unusable("generate request has neither messages nor prompt")
            path = "/chat/completions"
        else:
            if request.prompt is None:
                raise _Unusable(
                    "completions model got a chat request (messages, no prompt); "
                    "render the prompt as text for api_type='completions'"
                )
            body["prompt"] = request.prompt
            path = "/completions"
        body["max_tokens"] = request.max_tokens
        body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        return path, body, self._parse_chat if self.chat else self._parse_completion

    def _plan_loglikelihood(
        self, request: Request
    ) -> tuple[str | None, dict[str, Any], Callable[[Any], Response]]:
        context = request.context or ""
        continuations = request.continuations
        if not continuations:
            return (
                None,
                {},
                lambda _: Response(loglikelihoods=(), continuation_lengths=(), attempts=0),
            )
        body = {
            "model": self._model,
            "prompt": [context + c for c in continuations],
            "echo": True,
            "logprobs": 1,
            "max_tokens": 0,
            "temperature": 0,
        }

        def parse(data: Any) -> Response:
            return self._parse_loglikelihood(data, context, continuations)

        return "/completions", body, parse

    # ----------------------------------------------------------- response parsing

    @staticmethod
    def _usage(data: Any) -> tuple[int | None, int | None]:
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            return None, None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return (
            prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None,
        )

    def _parse_chat(self, data: Any) -> Response:
        message = data["choices"][0]["message"]
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is not None and not isinstance(content, str):
            raise TypeError(f"message content is {type(content).__name__}")
        prompt_tokens, completion_tokens = self._usage(data)
        return Response(
            text=content or "", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )

    def _parse_completion(self, data: Any) -> Response:
        text = data["choices"][0]["text"]
        if not isinstance(text, str):
            raise TypeError(f"choice text is {type(text).__name__}")
        prompt_tokens, completion_tokens = self._usage(data)
        return Response(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def _parse_loglikelihood(
        self, data: Any, context: str, continuations: Sequence[str]
    ) -> Response:
        """Sum the log-probs of the continuation tokens (contracts.md, log-likelihood rule).

        A token straddling the end of the context counts as continuation, e.g. " A" in
        "Answer: " + "A": the same tokens the HF backend sums when scoring directly.
        """
        choices = data["choices"]
        if len(choices) != len(continuations):
            raise ValueError(f"{len(choices)} choices for {len(continuations)} prompts")
        by_index = {
            (c["index"] if isinstance(c.get("index"), int) else pos): c
            for pos, c in enumerate(choices)
        }
        start = len(context)
        sums: list[float] = []
        lengths: list[int] = []
        for i, continuation in enumerate(continuations):
            logprobs = by_index[i].get("logprobs")
            if not isinstance(logprobs, dict) or logprobs.get("text_offset") is None:
                raise _Unusable(
                    f"the endpoint {self._display_base}/completions does not return prompt "
                    "log-probs (no logprobs.text_offset with echo=true)"
                )
            offsets = logprobs["text_offset"]
            values = logprobs["token_logprobs"]
            if len(offsets) != len(values):
                raise ValueError("text_offset and token_logprobs differ in length")
            end = start + len(continuation)
            first = continuation_start(offsets, start, end)
            total, count = 0.0, 0
            for offset, value in zip(offsets[first:], values[first:], strict=True):
                # Tokens past the prompt (a server that ignored max_tokens=0) are not ours;
                # only the prompt's first token has no log-prob, and it is never counted.
                if offset < end and value is not None:
                    total += float(value)
                    count += 1
            sums.append(total)
            lengths.append(count)
        prompt_tokens, _ = self._usage(data)
        return Response(
            loglikelihoods=tuple(sums),
            continuation_lengths=tuple(lengths),
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
        )

    # -------------------------------------------------------------------- helpers

    def _loop_state(self) -> _LoopState:
        """The session, slots and limiter of the running loop (made on first use in a loop)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._state is not None and self._state.loop is loop:
            return self._state
        if self._state is not None:
            # The previous loop is gone (asyncio.run called again); its pooled
            # connections cannot be reused or closed from here.
            logger.debug("%s: new event loop, opening a new HTTP client", self.name)
            _abandon(self._state)
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"proctor/{_version()}",
        }
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        elif any(self._url_credentials):
            token = base64.b64encode(":".join(self._url_credentials).encode("utf-8")).decode(
                "ascii"
            )
            headers["Authorization"] = f"Basic {token}"
        size = self.config.max_concurrency
        # One session, one pool: aiohttp hands out pooled connections in constant time
        # (unlike httpcore's pool, which scans every connection on each request), and its
        # C HTTP parser costs a fraction of the CPU of httpx per request. Cookies are
        # not kept: an API needs none, and the jar costs CPU on every response.
        connector = aiohttp.TCPConnector(
            limit=size,
            limit_per_host=0,
            ssl=_ssl_context() if self._base.lower().startswith("https:") else True,
        )
        timeout = self.config.timeout
        session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            # Like httpx's Timeout(t): t to connect and t of silence while reading.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        )
        self._state = _LoopState(
            loop=loop,
            slots=ConcurrencyLimit(size),
            limiter=RateLimiter.from_limits(self.config.qps, self.config.rpm),
            session=session,
            proxy=_environment_proxy(self._base),
        )
        return self._state

    def _resolve_key(self) -> tuple[str | None, str]:
        """The API key and a secret-free description of where it came from."""
        if self.config.api_key is not None:
            value = self.config.api_key.get_secret_value()
            if value:
                return value, "the api_key of the model config"
        env = self.config.api_key_env
        value = os.environ.get(env, "") if env else ""
        return (value or None), f"${env}"

    def _redact(self, text: str) -> str:
        """Remove the API key and any api_base password from text that came from a server."""
        for secret in (self._key, self._url_credentials[1]):
            if secret and secret in text:
                text = text.replace(secret, "***")
        return text

    def _server_message(self, resp: _Reply) -> str:
        """The error message of an OpenAI-style error body, else the start of the body."""
        try:
            data = json.loads(resp.content)
        except ValueError:
            text = resp.text.strip()
        else:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict) and error.get("message"):
                text = str(error["message"])
            elif isinstance(error, str):
                text = error
            elif isinstance(data, dict) and data.get("detail"):
                text = str(data["detail"])
            elif isinstance(data, dict) and data.get("message"):
                text = str(data["message"])
            else:
                text = resp.text.strip()
        text = " ".join(self._redact(text).split())
        if len(text) > _MAX_SERVER_MESSAGE:
            text = text[: _MAX_SERVER_MESSAGE - 3] + "..."
        return text

    def _server_message_part(self, resp: _Reply) -> str:
        message = self._server_message(resp)
        return f": {message}" if message else ""

    def _auth_message(self, resp: _Reply, shown_url: str) -> str:
        status = f"{resp.status_code} {resp.reason_phrase}".strip()
        said = self._server_message(resp)
        said = f" ({said})" if said else ""
        if self._key is None:
            advice = (
                f"{self._key_source} is not set; export the API key in it or name another "
                "variable with --api-key-env"
            )
        elif resp.status_code == 403:
            advice = f"the key from {self._key_source} is not allowed to use this model or endpoint"
        else:
            advice = (
                f"the key from {self._key_source} was rejected; check it or name another "
                "variable with --api-key-env"
            )
        return f"server at {shown_url} answered {status}{said}: {advice}"

    def _model_ids(self, resp: _Reply) -> list[str] | None:
        """Model ids of a /models answer; None when the answer is not a model list."""
        if resp.status_code != 200:
            return None
        try:
            data = json.loads(resp.content)
        except ValueError:
            return None
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            return None
        ids = [
            item["id"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        ]
        return ids


def _version() -> str:
    from proctor import __version__

    return __version__


def _environment_proxy(url: str) -> str | None:
    """The proxy that $http(s)_proxy / $all_proxy / $no_proxy choose for url (urllib's rules)."""
    from urllib.request import getproxies_environment, proxy_bypass

    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _with(response: Response, **changes: Any) -> Response:
    return replace(response, **changes)


@cache
def _ssl_context() -> ssl.SSLContext:
    """Verified TLS with $SSL_CERT_FILE / $SSL_CERT_DIR, else certifi's CA bundle (as httpx did).

    Made once per process: loading CA certificates is slow.
    """
    import ssl

    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:  # the system's certificates, then
            pass
        else:
            cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _abandon(state: _LoopState) -> None:
    """Let go of the session of a loop other than the running one (asyncio.run called again)."""
    if not state.loop.is_closed():
        return  # that loop may still use it (requests in flight in another thread)
    # The loop has ended: its connections cannot be closed any more. Mark session and
    # connector closed so that aiohttp does not log "Unclosed ..." errors for them.
    connector = state.session.connector
    state.session.detach()
    close_now = getattr(connector, "_close", None)  # closes nothing once the loop is closed
    if close_now is not None:
        close_now()
