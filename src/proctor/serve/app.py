"""The FastAPI app: OpenAI's /v1/models, /v1/chat/completions, /v1/completions, plus /health."""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, TypeVar

from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse, Response as HttpResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from proctor.core import Message, Request, Response
from proctor.models.base import Backend, PromptLogprobs
from proctor.serve.batcher import Batcher
from proctor.serve.options import DEFAULT_MAX_TOKENS
from proctor.serve.prompter import Prompter
from proctor.serve.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    completion_logprobs,
    model_card,
    new_id,
    now,
    parse_body,
    sse,
    usage,
)

log = logging.getLogger("proctor.serve")
T = TypeVar("T")
B = TypeVar("B", ChatCompletionRequest, CompletionRequest)

# How often a waiting non-streaming handler checks whether its client left.
_DISCONNECT_POLL_S = 0.25


@dataclass(frozen=True)
class AppSettings:
    model_name: str
    api_key: str | None = field(default=None, repr=False)
    max_batch_size: int = 32
    batch_wait_s: float = 0.005
    default_max_tokens: int = DEFAULT_MAX_TOKENS


class _ClientGone(Exception):
    """The client disconnected while its request waited: nobody reads the answer."""


@dataclass(frozen=True)
class _Generated:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class ServeState:
    """What the route handlers share: the backend's batcher, the prompter, the settings."""

    def __init__(self, backend: Backend, settings: AppSettings, prompter: Prompter | None) -> None:
        self.backend = backend
        self.settings = settings
        self.prompter = prompter
        self.batcher = Batcher(backend, settings.max_batch_size, settings.batch_wait_s)
        self.created = now()

    # --- checks shared by the endpoints -------------------------------------

    def authorize(self, http: HttpRequest) -> None:
        key = self.settings.api_key
        if not key:
            return
        header = http.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        # Constant-time comparison: response timing must not leak the key.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(
                401,
                "missing or incorrect API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.settings.model_name:
            raise ApiError(
                404,
                f"the model '{model}' does not exist; this server serves '{self.settings.model_name}'",
                param="model",
                code="model_not_found",
            )

    def budget(self, prompt_tokens: int | None, requested: int | None, param: str) -> int:
        """max_tokens for a prompt of `prompt_tokens`: refuses prompts beyond the context."""
        max_tokens = self.settings.default_max_tokens if requested is None else requested
        if prompt_tokens is None or self.prompter is None:
            return max_tokens
        limit = self.prompter.max_seq_len
        if prompt_tokens > limit:
            raise ApiError(
                400,
                f"this model's maximum context length is {limit} tokens, but the prompt has "
                f"{prompt_tokens} tokens; shorten the prompt",
                param=param,
                code="context_length_exceeded",
            )
        # Generation stops at the context limit (finish_reason "length") rather than
        # refusing the request: evaluation clients send one max_tokens for every
        # prompt, and a short answer to a long prompt must still be possible.
        return min(max_tokens, limit - prompt_tokens)

    # --- generation ----------------------------------------------------------

    async def generate(self, request: Request, prompt_tokens: int | None) -> _Generated:
        """Run one generate Request in the next batch (no model call for max_tokens=0)."""
        if request.max_tokens == 0:
            return _Generated("", "length", prompt_tokens or 0, 0)
        response = await backend_call(self.batcher.generate(request))
        return self.finish(request, response, prompt_tokens)

    def finish(self, request: Request, response: Response, prompt_tokens: int | None) -> _Generated:
        """Apply stop strings and work out finish_reason and token counts."""
        if response.error is not None:
            raise ApiError(500, f"the model failed on this request: {response.error}", type="server_error")
        text = response.text or ""
        stopped = False
        cut = min((i for i in (text.find(s) for s in request.stop) if i >= 0), default=-1)
        if cut >= 0:  # the backend should have stopped there; make sure of it
            text, stopped = text[:cut], True
        completion_tokens = response.completion_tokens
        if completion_tokens is None or stopped:
            completion_tokens = self.count(text, add_special_tokens=False)
        if response.prompt_tokens is not None:
            prompt_tokens = response.prompt_tokens
        hit_length = not stopped and request.max_tokens > 0 and completion_tokens >= request.max_tokens
        return _Generated(
            text=text,
            finish_reason="length" if hit_length or request.max_tokens == 0 else "stop",
            prompt_tokens=prompt_tokens or 0,
            completion_tokens=completion_tokens,
        )

    def count(self, text: str, *, add_special_tokens: bool) -> int:
        if self.prompter is None:
            return len(text.split())  # a rough count is better than none for usage
        return self.prompter.count(text, add_special_tokens=add_special_tokens)

    # --- chat -----------------------------------------------------------------

    def chat_request(self, body: ChatCompletionRequest) -> tuple[Request, int | None]:
        """The backend Request for a chat body, and its prompt's token count when known."""
        messages = tuple(m.to_message(i) for i, m in enumerate(body.messages))
        prompt, count = self._chat_prompt(messages)
        request = Request(
            kind="generate",
            # An override template gives a plain prompt; otherwise the backend renders the messages.
            messages=messages if prompt is None else None,
            prompt=prompt,
            max_tokens=self.budget(count, body.requested_max_tokens(), "messages"),
            temperature=body.sampling_temperature(),
            stop=body.stop_strings(),
        )
        return request, count

    def _chat_prompt(self, messages: tuple[Message, ...]) -> tuple[str | None, int | None]:
        """(plain prompt, or None to send the messages; the prompt's token count when known)."""
        prompter = self.prompter
        if prompter is None:
            return None, None
        if not prompter.has_chat_template:
            # A base model: the backend sends the messages' text, one paragraph each.
            return None, prompter.count("\n\n".join(m.content for m in messages))
        try:
            rendered = prompter.render_chat(messages)
        except Exception as exc:  # a template that rejects this conversation (roles, order)
            raise ApiError(400, f"the chat template rejected these messages: {exc}", param="messages") from None
        if prompter.chat_template is None:
            # The backend renders the tokenizer's template itself (as `proctor run --hf-path`
            # does); the rendered text holds the template's special tokens already.
            return None, prompter.count(rendered, add_special_tokens=False)
        # An override template: the backend gets the rendered text as a plain prompt.
        prompt = prompter.plain_prompt(rendered)
        return prompt, prompter.count(prompt)

    async def read_body(self, http: HttpRequest, model: type[B]) -> B:
        """The checks every generation endpoint starts with: key, JSON body, model name, n."""
        self.authorize(http)
        body = parse_body(await http.body(), model)
        self.check_model(body.model)
        if body.n != 1:
            raise ApiError(400, f"n={body.n} is not supported: only n=1", param="n", code="invalid_value")
        return body


async def backend_call(work: Awaitable[T]) -> T:
    """Await a batcher call; a failing backend becomes a 500 error for this request only."""
    try:
        return await work
    except (ApiError, asyncio.CancelledError):
        raise
    except Exception as exc:
        log.warning("the backend failed a request: %s: %s", type(exc).__name__, exc)
        raise ApiError(500, f"the model failed on this request: {exc}", type="server_error") from None


async def wait_for_client(http: HttpRequest, work: Awaitable[T]) -> T:
    """Await `work`, giving it up (and its place in the queue) if the client disconnects."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await http.is_disconnected():
                raise _ClientGone()
    finally:
        if not task.done():
            task.cancel()


def create_app(backend: Backend, settings: AppSettings, prompter: Prompter | None = None) -> FastAPI:
    """The OpenAI-compatible app over an already started `backend`."""
    state = ServeState(backend, settings, prompter)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.batcher.start()
        try:
            yield
        finally:
            await state.batcher.stop()

    app = FastAPI(title="proctor serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state

    @app.exception_handler(ApiError)
    async def _api_error(_: HttpRequest, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(_ClientGone)
    async def _client_gone(_: HttpRequest, __: _ClientGone) -> HttpResponse:
        return HttpResponse(status_code=499)  # nginx's "client closed request"; never read

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
        error = ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: HttpRequest, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        error = ApiError(500, f"internal server error: {type(exc).__name__}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model_name,
            "max_batch_size": settings.max_batch_size,
            **state.batcher.stats.to_json(),
        }

    @app.get("/v1/models")
    async def list_models(http: HttpRequest) -> dict[str, Any]:
        state.authorize(http)
        return {"object": "list", "data": [model_card(settings.model_name, state.created)]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, http: HttpRequest) -> dict[str, Any]:
        state.authorize(http)
        state.check_model(model_id)
        return model_card(settings.model_name, state.created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(http: HttpRequest) -> dict[str, Any] | StreamingResponse:
        body = await state.read_body(http, ChatCompletionRequest)
        if body.logprobs:
            raise ApiError(400, "logprobs are not supported on chat completions; use /v1/completions", param="logprobs")
        request, prompt_tokens = state.chat_request(body)
        if body.stream:
            return _stream(_chat_chunks(state, request, prompt_tokens, body.include_usage()))
        result = await wait_for_client(http, state.generate(request, prompt_tokens))
        return {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            "created": now(),
            "model": settings.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": usage(result.prompt_tokens, result.completion_tokens),
        }

    @app.post("/v1/completions", response_model=None)
    async def completions(http: HttpRequest) -> dict[str, Any] | StreamingResponse:
        body = await state.read_body(http, CompletionRequest)
        prompts = body.prompts()
        if body.logprobs is not None and not state.batcher.supports_logprobs:
            raise ApiError(400, "this backend cannot return logprobs", param="logprobs")
        if body.stream and len(prompts) > 1:
            raise ApiError(400, "stream=true takes a single prompt", param="prompt")
        counts = [state.count(p, add_special_tokens=True) if prompter else None for p in prompts]
        budgets = [state.budget(c, body.max_tokens, "prompt") for c in counts]
        if body.stream:
            return _stream(_completion_chunks(state, body, prompts[0], budgets[0], counts[0]))
        answers = await wait_for_client(
            http,
            asyncio.gather(*(_complete(state, body, p, m, c) for p, m, c in zip(prompts, budgets, counts))),
        )
        return {
            "id": new_id("cmpl"),
            "object": "text_completion",
            "created": now(),
            "model": settings.model_name,
            "choices": [{**choice, "index": index} for index, (choice, _) in enumerate(answers)],
            "usage": usage(
                sum(r.prompt_tokens for _, r in answers), sum(r.completion_tokens for _, r in answers)
            ),
        }

    return app


async def _complete(
    state: ServeState, body: CompletionRequest, prompt: str, max_tokens: int, prompt_tokens: int | None
) -> tuple[dict[str, Any], _Generated]:
    """One choice of a completion (and its counts): generate, then score the tokens when logprobs are asked."""
    request = Request(
        kind="generate", prompt=prompt, max_tokens=max_tokens,
        temperature=body.sampling_temperature(), stop=body.stop_strings(),
    )  # fmt: skip
    result = await state.generate(request, prompt_tokens)
    logprobs = None
    if body.logprobs is not None and (body.echo or result.text):
        scored: PromptLogprobs = await backend_call(state.batcher.prompt_logprobs(prompt + result.text))
        logprobs = completion_logprobs(scored, 0 if body.echo else len(prompt), len(prompt) + len(result.text))
        if prompt_tokens is None:  # the scorer tokenized the prompt; use its count
            result = replace(result, prompt_tokens=sum(1 for o in scored.offsets if o < len(prompt)))
    choice = {
        "index": 0,
        "text": (prompt if body.echo else "") + result.text,
        "logprobs": logprobs,
        "finish_reason": result.finish_reason,
    }
    return choice, result


def _stream(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """An SSE response of `chunks`, then `[DONE]`; an ApiError midway is sent as an error event."""

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield sse(chunk)
        except ApiError as exc:
            yield sse(exc.body())
        yield sse("[DONE]")

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _chat_chunks(
    state: ServeState, request: Request, prompt_tokens: int | None, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """Chunks of a chat completion. The backend answers whole, so the text comes in one chunk."""
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", "created": now(),
            "model": state.settings.model_name}  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""}, None)
    # No disconnect polling here: Starlette cancels a stream whose client left.
    result = await state.generate(request, prompt_tokens)
    if result.text:
        yield chunk({"content": result.text}, None)
    yield chunk({}, result.finish_reason)
    if include_usage:
        yield {**base, "choices": [], "usage": usage(result.prompt_tokens, result.completion_tokens)}


async def _completion_chunks(
    state: ServeState, body: CompletionRequest, prompt: str, max_tokens: int, prompt_tokens: int | None
) -> AsyncIterator[dict[str, Any]]:
    """Chunks of a text completion (one prompt)."""
    base = {"id": new_id("cmpl"), "object": "text_completion", "created": now(),
            "model": state.settings.model_name}  # fmt: skip
    choice, result = await _complete(state, body, prompt, max_tokens, prompt_tokens)
    yield {**base, "choices": [{**choice, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": result.finish_reason}]}
    if body.include_usage():
        yield {**base, "choices": [], "usage": usage(result.prompt_tokens, result.completion_tokens)}
