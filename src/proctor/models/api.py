"""The backend for models behind an OpenAI-compatible HTTP API (async, on aiohttp)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from proctor.core import Request, Response
from proctor.errors import BackendError
from proctor.config.secrets import public_query, public_url
from proctor.models.api_credentials import Credentials, split_credentials
from proctor.models.api_errors import (
    Failure,
    Unusable,
    auth_message,
    classify_reply,
    is_model_not_found,
    printable,
    server_message,
    server_message_part,
    short_reason,
)
from proctor.models.api_limits import expected_tokens, is_push_back, used_tokens
from proctor.models.api_http import LoopState, Reply, abandon, exchange, open_loop_state
from proctor.models.api_payloads import (
    encode_body,
    model_entries,
    plan_request,
    system_fingerprint,
)
from proctor.models.base import OnResponse, settings_tag
from proctor.models.retry import RetryPolicy
from proctor.models.slots import AdaptiveLimit

if TYPE_CHECKING:  # pydantic is imported lazily: `proctor --help` must stay fast
    from proctor.config.schema import ApiModelConfig

logger = logging.getLogger(__name__)
# Retry waits longer than this are logged as warnings (a Retry-After of a minute, say).
LONG_WAIT_S = 5.0

# Endpoint paths users paste into api_base (the OpenCompass tutorial writes
# http://host:23333/v1/chat/completions); proctor appends the endpoint itself.
_ENDPOINT_SUFFIXES = ("/chat/completions", "/completions")
# What a /models entry says about the checkpoint behind a model id (vLLM/SGLang/LMDeploy:
# root is the model path, parent the base of a LoRA; Ollama: created is the model's mtime;
# OpenAI: created is the model's release). `owned_by` is left out: it names the serving
# software or company (vllm, openai), the same for every checkpoint it serves.
# `fingerprint`: `proctor serve`'s digest of everything behind its answers (weights, dtype,
# chat template, settings), also sent as each answer's `system_fingerprint`.
_MODEL_FACTS = ("fingerprint", "root", "parent", "created")
# A `created` this close to the server's clock may be made up for the reply (vLLM stamps
# every /models reply with the current time) or be a checkpoint's mtime that is simply
# recent (a fine-tune just copied in): GET /models is asked again a second later, and a
# `created` that moved with the clock is left out (it would make every run a cache miss).
_VOLATILE_CREATED_S = 300
_CREATED_RECHECK_S = 1.1


class ApiBackend:
    """A model behind an OpenAI-compatible API: /models, /chat/completions, /completions.

    All concurrent `process()` calls share one concurrency limit and one rate
    limiter, so several datasets run at once never exceed the model's limits.

    Identity (the response-cache key prefix): the endpoint (with its non-secret query,
    e.g. `?api-version=...`), the model id and the API type, plus -- by default --
    what the server's GET /models says about that model's checkpoint (`fingerprint`,
    which `proctor serve` publishes as a digest of its full backend identity, `root`,
    `parent`, `created`; not `owned_by`, which names the serving software), and the
    config's `revision` when set. So a server that loads another checkpoint under the
    same name (another path, another mtime, other weights or settings) gets a new
    identity and nothing stale is reused. A `created` within a few minutes of the
    server's clock is asked for again a second later and left out only when it moved
    (vLLM stamps each reply with the current time; it would make every run a cache
    miss), so a freshly copied checkpoint's recent mtime still counts. A server that
    reports nothing about the model is named in a message at start(): set `revision`
    to tell its checkpoints apart. `system_fingerprint`s seen in answers are collected
    in `fingerprints`; one that differs from the published fingerprint stops the model
    (the server swapped its model during the run).
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
        # Credentials written in the URL become Basic auth (unless a key is set), never part
        # of the request URL, the identity or a message.
        bare, username, password = split_credentials(config.api_base.strip())
        self._base, self._query, endpoint = _split_base(bare)
        self._display_base = public_url(self._base)
        if endpoint is not None:
            logger.warning(
                "api_base ends with the endpoint %s; using %s (proctor adds %s itself)",
                endpoint,
                self._display_base,
                endpoint,
            )
        self._credentials = Credentials.resolve(config, username, password)
        if self._credentials.authorization() is None:
            _note_no_key(config, self._display_base)
        # The schema may not know `revision` yet: read it if it is there.
        revision = getattr(config, "revision", None)
        self._revision: str | None = str(revision) if revision else None
        self._server_facts: str | None = None  # what GET /models says about the model
        # The fingerprint GET /models gave (proctor serve): every answer must carry the same.
        self._published_fingerprint: str | None = None
        self.identity_verified = False  # set by start(): the server named the checkpoint, or a revision is set
        self._served: list[str] | None = None  # the model ids GET /models listed
        self.fingerprints: set[str] = set()  # system_fingerprint values seen in answers
        self._model: str | None = config.model
        self._retry = RetryPolicy(retries=config.retry, base=backoff_base, cap=backoff_cap)
        self._rng = random.Random()
        self._state: LoopState | None = None
        self._started = False
        # The Batch API instead of online requests (models/batch.py); needs attach_run().
        self._batch: Any = None
        if getattr(config, "batch", False):
            from proctor.models.batch import BatchSender

            self._batch = BatchSender(self)
        self._counter: Any = None  # an httpx.Client for POST /tokenize, made on first use

    # ----------------------------------------------------------------- properties

    @property
    def identity(self) -> str:
        """'api|<base url>[?query]|<model id>|<api type>[|server:<facts>][|revision:<r>]':
        secret-free, part of every cache key (see the class docstring)."""
        query = public_query(self._query)
        parts = [
            "api",
            f"{self._display_base}?{query}" if query else self._display_base,
            str(self._model),
            self.config.api_type,
        ]
        if self._server_facts:
            parts.append(f"server:{self._server_facts}")
        if self._revision:
            parts.append(f"revision:{self._revision}")
        return "|".join(parts) + settings_tag(self._body_settings())

    def _body_settings(self) -> dict[str, Any]:
        """What the config adds to a generate request (reasoning_effort, extra_body, the budget's name)."""
        settings = getattr(self.config, "body_settings", None)
        extra = dict(settings()) if settings is not None else {}
        if getattr(self.config, "max_completion_tokens", False):
            extra["max_tokens_field"] = "max_completion_tokens"
        return extra

    def _url(self, path: str) -> str:
        """The request URL of an endpoint: base + path + the query of api_base (kept on all)."""
        return f"{self._base}{path}?{self._query}" if self._query else f"{self._base}{path}"

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
            if getattr(self.config, "max_seq_len", None):
                await self._probe_tokenize(state)
        except BaseException:
            await self.close()  # a failed start leaves no open connections behind
            raise
        self._started = True

    async def _preflight(self, state: LoopState) -> None:
        """GET /models: is the endpoint there, does the key work, which model to use."""
        import aiohttp

        url = self._url("/models")
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
        entries = model_entries(resp)
        ids = None if entries is None else [str(e["id"]) for e in entries]
        self._served = ids
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
                printable(self._model),
                _listing(ids),
            )
        entry = next((e for e in entries or () if e["id"] == self._model), None)
        keep_created = True
        # A published fingerprint names everything already (proctor serve): no second look needed.
        if entry is not None and not entry.get("fingerprint") and _recent_created(entry, _server_time(resp)):
            keep_created = await self._created_is_stable(state, url, entry["created"])
        self._server_facts = _model_facts(entry, keep_created) if entry else None
        fingerprint = entry.get("fingerprint") if entry else None
        self._published_fingerprint = printable(fingerprint) if isinstance(fingerprint, str) and fingerprint else None
        # Without facts on the checkpoint or a revision, the URL and name could serve another
        # checkpoint next time: the engine then keeps this model's cached answers to one run.
        self.identity_verified = bool(self._server_facts or self._revision)
        if not self.identity_verified:
            logger.info(
                "%s says nothing about the checkpoint behind model %r (no root or created "
                "in GET /models): its answers are reused within this run only; set the model's "
                "revision to reuse them across runs",
                self._display_base,
                printable(str(self._model)),
            )

    def _tokenize_url(self) -> str:
        """vLLM's (and `proctor serve`'s) POST /tokenize lives at the server root, beside /v1."""
        root = self._base[: -len("/v1")] if self._base.rstrip("/").endswith("/v1") else self._base
        return f"{root.rstrip('/')}/tokenize"

    async def _probe_tokenize(self, state: LoopState) -> None:
        """When the server counts tokens (POST /tokenize), prompts are fitted to max_seq_len with
        its own tokenizer and chat template instead of an estimate: `count_tokens` appears."""
        body = json.dumps({"model": self._model, "prompt": "Hello"}).encode()
        try:
            async with state.slots.slot():
                resp = await exchange(state, "POST", self._tokenize_url(), body)
            count = json.loads(resp.content).get("count") if resp.status_code == 200 else None
        except Exception:  # no such endpoint, or not JSON: the estimate it is
            return
        if isinstance(count, int) and not isinstance(count, bool):
            self.count_tokens = self._count_with_server
            logger.info("%s counts prompt tokens (POST /tokenize): max_seq_len is checked with it", self._display_base)

    def _count_with_server(self, request: Request) -> int:
        """The tokens a request takes, as the server counts them, plus what it may generate."""
        import httpx

        if request.kind == "loglikelihood":
            longest = max(request.continuations, key=len, default="")
            body: dict[str, Any] = {"prompt": (request.context or "") + longest}
        elif request.messages is not None:
            body = {"messages": [{"role": m.role, "content": m.content} for m in request.messages]}
        else:
            body = {"prompt": request.prompt or ""}
        if self._counter is None:  # one kept-alive connection for all the counting
            headers = {"Content-Type": "application/json"}
            authorization = self._credentials.authorization()
            if authorization is not None:
                headers["Authorization"] = authorization
            self._counter = httpx.Client(headers=headers, timeout=self.config.timeout, trust_env=True)
        try:
            resp = self._counter.post(self._tokenize_url(), json={"model": self._model, **body})
            count = resp.json()["count"]
        except Exception as exc:
            raise BackendError(
                f"{self._display_base}: POST /tokenize failed ({self._credentials.redact(short_reason(exc))}) "
                "while fitting prompts to max_seq_len"
            ) from None
        return int(count) + (request.max_tokens if request.kind == "generate" else 0)

    async def _created_is_stable(self, state: LoopState, url: str, created: Any) -> bool:
        """Whether a `created` near the server's clock is still the same a second later (a
        checkpoint's time, kept) rather than stamped per reply (left out)."""
        await asyncio.sleep(_CREATED_RECHECK_S)
        try:
            async with state.slots.slot():
                again = model_entries(await exchange(state, "GET", url))
        except Exception:  # cannot tell: keeping it only costs cache hits, never gives wrong ones
            return True
        entry = next((e for e in again or () if e["id"] == self._model), None)
        return entry is None or entry.get("created") == created

    def attach_run(self, folder: Path) -> None:
        """Where this model keeps its run files (the Batch API's input files and batch ids)."""
        if self._batch is not None:
            self._batch.attach(folder)
        elif (folder / "state.json").is_file():
            from proctor.models.batch_files import BatchState

            live = [e for e in BatchState.load(folder).live() if e.batch_id is not None]
            if live:
                logger.warning("%s: %d batches of this run are still open at the Batch API; without --api-batch "
                               "they are not waited for and their requests are sent online", self.name, len(live))

    async def close(self) -> None:
        if self._batch is not None:
            await self._batch.close()
        counter, self._counter = self._counter, None
        if counter is not None:
            counter.close()
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
        if self._batch is not None:
            await self._batch.process(requests, on_response)
            return
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
        started = time.perf_counter()
        attempt = 0
        planned: tuple[str, dict[str, Any], Callable[[Any], Response], str, bytes] | None = None
        while True:
            attempt += 1
            async with state.slots.slot():
                if planned is None:
                    # Built once a slot is free: the thousands of requests of 32 subjects waiting
                    # for one of 256 slots hold no bodies (25k MMLU + CMMLU: 40 MB of peak RSS).
                    try:
                        path, body, parse = plan_request(
                            request, model=self._model, chat=self.chat, display_base=self._display_base,
                            settings=self._body_settings(),
                        )
                    except Unusable as exc:
                        return Response(error=str(exc), attempts=0)
                    if path is None:  # nothing to ask (a loglikelihood request without continuations)
                        return parse({})
                    planned = path, body, parse, self._url(path), encode_body(body)
                path, body, parse, url, content = planned
                logprobs = bool(body.get("echo"))
                if state.limiter is not None:
                    await state.limiter.acquire()
                reserved = 0
                if state.tokens is not None:
                    reserved = expected_tokens(content, body)
                    await state.tokens.acquire(reserved)
                sent = time.perf_counter()
                outcome = await self._attempt(state, url, path, content, parse, logprobs)
                latency = time.perf_counter() - sent
            if state.tokens is not None:
                state.tokens.settle(reserved, used_tokens(outcome))
            if isinstance(state.slots, AdaptiveLimit):
                state.slots.observe(sent, latency, pushed_back=is_push_back(outcome))
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
            # A long wait the server asked for would look like a hang: say it, terminal or not.
            log_wait = logger.warning if delay > LONG_WAIT_S else logger.debug
            log_wait(
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
        path: str,
        content: bytes,
        parse: Callable[[Any], Response],
        logprobs: bool,
    ) -> Response | Failure:
        """One HTTP exchange: a Response, or a Failure saying whether to retry.

        Raises BackendError when the answer says the whole model is unusable: a rejected
        key (401/403) or a model id the server does not serve (404 model_not_found).
        """
        import aiohttp

        try:
            resp = await exchange(state, "POST", url, content)
        except TimeoutError:  # aiohttp's ServerTimeoutError is one
            return Failure(
                f"no complete answer within {self.config.timeout:g} s (the timeout)", retryable=True
            )
        except aiohttp.ClientError as exc:
            reason = printable(self._credentials.redact(short_reason(exc)))
            return Failure(f"connection error: {reason}", retryable=True)
        return self._judge_reply(resp, path, parse, logprobs)

    def _masked(self, response: Response) -> Response:
        """The response with any part of the API key that the server echoed into it masked."""
        redact = self._credentials.redact_output
        text, reasoning = redact(response.text), redact(response.reasoning)
        if text is response.text and reasoning is response.reasoning:
            return response
        return replace(response, text=text, reasoning=reasoning)

    def _judge_reply(
        self, resp: Reply, path: str, parse: Callable[[Any], Response], logprobs: bool
    ) -> Response | Failure:
        """The Response of an answer to `path` (online, or a Batch API result line), or a Failure."""
        shown = f"{self._display_base}{path}"
        if is_model_not_found(resp):
            raise BackendError(self._not_served_message(resp, shown))

        def parse_noting(data: Any) -> Response:
            fingerprint = system_fingerprint(data)
            if fingerprint is None:
                return self._masked(parse(data))
            shown_fingerprint = printable(fingerprint)
            published = self._published_fingerprint
            if published is not None and shown_fingerprint != published:
                # The server now runs another checkpoint or settings than the identity names.
                raise BackendError(
                    f"{shown} answered with system_fingerprint {shown_fingerprint}, but GET /models "
                    f"said {published}: the server changed its model during the run; run again"
                )
            self.fingerprints.add(shown_fingerprint)
            return replace(self._masked(parse(data)), system_fingerprint=shown_fingerprint)

        return classify_reply(
            resp,
            parse_noting,
            self._credentials,
            shown_url=shown,
            display_base=self._display_base,
            logprobs=logprobs,
        )

    def _not_served_message(self, resp: Reply, shown: str) -> str:
        """One line for a model id the server does not serve, listing the ids it does."""
        said = server_message(resp, self._credentials)
        said = f" ({said})" if said else ""
        if self._served:
            served = f"it serves {_listing(self._served)}; set the model name to one of them"
        else:
            served = "set the model name to one the server serves (GET /models lists them)"
        return (
            f"{shown} answered HTTP {resp.status_code}: model "
            f"{printable(repr(self._model))} is not served there{said}; {served}"
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


_NOTED_NO_KEY: set[str] = set()


def _note_no_key(config: ApiModelConfig, shown_base: str) -> None:
    """Say once per variable that requests go without a key: fine for a local server, a
    surprise for a hosted one. A warning when the user named the variable, else a note."""
    env = config.api_key_env
    if env in _NOTED_NO_KEY:
        return
    _NOTED_NO_KEY.add(env)
    named = "api_key_env" in config.model_fields_set
    (logger.warning if named else logger.info)(
        "$%s is not set: requests to %s go without an API key (fine for a local server)", env, shown_base
    )


def _listing(ids: Sequence[str]) -> str:
    """The first few model ids, for a log line (a server may list hundreds), made printable."""
    return ", ".join(printable(str(i)) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")


def _split_base(url: str) -> tuple[str, str, str | None]:
    """(base without query, fragment or trailing '/', the query, the endpoint suffix removed).

    `http://h/v1/chat/completions?api-version=1` -> (`http://h/v1`, `api-version=1`,
    `/chat/completions`).
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    removed = None
    for suffix in _ENDPOINT_SUFFIXES:
        if path.lower().endswith(suffix):
            path, removed = path[: -len(suffix)].rstrip("/"), suffix
            break
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), parts.query, removed


def _server_time(resp: Reply) -> float:
    """The server's clock from its Date header, else this machine's."""
    try:
        return parsedate_to_datetime(resp.headers.get("date", "")).timestamp()
    except (TypeError, ValueError, IndexError):
        return time.time()


def _recent_created(entry: dict[str, Any], server_now: float) -> bool:
    """Whether the entry's `created` is close enough to the server's clock to be a stamp."""
    value = entry.get("created")
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            and abs(value - server_now) < _VOLATILE_CREATED_S)


def _model_facts(entry: dict[str, Any], keep_created: bool = True) -> str | None:
    """'fingerprint=...,root=...,created=...' of a /models entry (the fields it has), or None."""
    facts = []
    for name in _MODEL_FACTS:
        value = entry.get(name)
        if value is None or value == "" or isinstance(value, (dict, list)):
            continue
        if name == "created":  # 0: unknown (many servers); a per-reply stamp: not the checkpoint's
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0 or not keep_created:
                continue
            value = int(value)
        text = printable(str(value)).replace("|", "%7C").replace(",", "%2C")[:200]
        facts.append(f"{name}={text}")
    return ",".join(facts) or None
