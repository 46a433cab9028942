"""The backend for models behind an OpenAI-compatible HTTP API (async, on aiohttp)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlsplit

from proctor.core import Request, Response
from proctor.errors import BackendError
from proctor.config.secrets import public_url
from proctor.models.api_credentials import Credentials, split_credentials
from proctor.models.api_errors import (
    Failure,
    Unusable,
    auth_message,
    classify_reply,
    server_message_part,
    short_reason,
)
from proctor.models.api_http import LoopState, abandon, exchange, open_loop_state
from proctor.models.api_payloads import encode_body, model_ids, plan_request
from proctor.models.base import OnResponse
from proctor.models.retry import RetryPolicy

if TYPE_CHECKING:  # pydantic is imported lazily: `proctor --help` must stay fast
    from proctor.config.schema import ApiModelConfig

logger = logging.getLogger(__name__)


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
        # Credentials written in the URL become Basic auth (unless a key is set), never part
        # of the request URL, the identity or a message.
        self._base, username, password = split_credentials(base)
        self._display_base = public_url(base)
        self._credentials = Credentials.resolve(config, username, password)
        self._model: str | None = config.model
        self._retry = RetryPolicy(retries=config.retry, base=backoff_base, cap=backoff_cap)
        self._rng = random.Random()
        self._state: LoopState | None = None
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

    async def _preflight(self, state: LoopState) -> None:
        """GET /models: is the endpoint there, does the key work, which model to use."""
        import aiohttp

        url = f"{self._base}/models"
        shown = f"{self._display_base}/models"
        try:
            async with state.slots.slot():
                resp = await exchange(state, "GET", url)
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise BackendError(
                f"cannot reach {self._display_base}: no answer within {self.config.timeout:g} s; "
                "is the server running?"
            ) from None
        except aiohttp.ClientError as exc:
            raise BackendError(
                f"cannot reach {self._display_base}: "
                f"{self._credentials.redact(short_reason(exc))}; is the server running?"
            ) from None
        if resp.status_code in (401, 403):
            raise BackendError(auth_message(resp, shown, self._credentials))
        ids = model_ids(resp)
        if ids is None:
            hint = ""
            if resp.status_code == 404 and not self._display_base.endswith("/v1"):
                hint = f" (did you mean {self._display_base}/v1?)"
            if self._model is None:
                raise BackendError(
                    f"cannot list the models of {shown}: HTTP {resp.status_code}"
                    f"{server_message_part(resp, self._credentials)}{hint}; "
                    "set the model name explicitly"
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
                    _listing(ids),
                    ids[0],
                )
            if not self.config.abbr:
                self.name = self._model
        elif ids and self._model not in ids:
            logger.warning(
                "%s does not list model %r (it lists %s); sending requests anyway",
                shown,
                self._model,
                _listing(ids),
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
            abandon(state)

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

    async def _answer(self, state: LoopState, request: Request) -> Response:
        """Send one request with retries; never raises except when the whole model is unusable."""
        try:
            path, body, parse = plan_request(
                request, model=self._model, chat=self.chat, display_base=self._display_base
            )
        except Unusable as exc:
            return Response(error=str(exc), attempts=0)
        if path is None:  # nothing to ask (a loglikelihood request without continuations)
            return parse({})
        url = f"{self._base}{path}"
        content = encode_body(body)
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
                return replace(outcome, latency_s=latency, attempts=attempt)
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

    async def _attempt(
        self,
        state: LoopState,
        url: str,
        content: bytes,
        parse: Callable[[Any], Response],
        logprobs: bool,
    ) -> Response | Failure:
        """One HTTP exchange: a Response, or a Failure saying whether to retry."""
        import aiohttp

        try:
            resp = await exchange(state, "POST", url, content)
        except TimeoutError:  # aiohttp's ServerTimeoutError is one
            return Failure(f"no answer within {self.config.timeout:g} s", retryable=True)
        except aiohttp.ClientError as exc:
            reason = self._credentials.redact(short_reason(exc))
            return Failure(f"connection error: {reason}", retryable=True)
        return classify_reply(
            resp,
            parse,
            self._credentials,
            shown_url=url.replace(self._base, self._display_base),
            display_base=self._display_base,
            logprobs=logprobs,
        )

    def _loop_state(self) -> LoopState:
        """The session, slots and limiter of the running loop (made on first use in a loop)."""
        loop = asyncio.get_running_loop()
        if self._state is not None and self._state.loop is loop:
            return self._state
        if self._state is not None:
            # The previous loop is gone (asyncio.run called again); its pooled
            # connections cannot be reused or closed from here.
            logger.debug("%s: new event loop, opening a new HTTP client", self.name)
            abandon(self._state)
        self._state = open_loop_state(self._base, self._credentials, self.config)
        return self._state


def _listing(ids: Sequence[str]) -> str:
    """The first few model ids, for a log line (a server may list hundreds)."""
    return ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
