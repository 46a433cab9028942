"""The FastAPI app: OpenAI's /v1/models, /v1/chat/completions, /v1/completions, plus /health and vLLM's /tokenize."""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Sequence, TypeVar

from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse, Response as HttpResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from proctor.core import Message, Request, Response
from proctor.models.base import Backend, PromptLogprobs
from proctor.serve.batcher import Batcher
from proctor.serve.options import DEFAULT_MAX_TOKENS
from proctor.serve.prompter import Prompter
from proctor.models.hf_spans import continuation_start
from proctor.serve.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    TokenizeRequest,
    completion_logprobs,
    model_card,
    token_logprobs_json,
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
    # What /v1/models says about the checkpoint (clients key their caches on it): its
    # path as `root`, and the time its files last changed as `created`.
    model_root: str | None = None
    model_created: int | None = None
    # A digest of everything behind the answers (the backend's identity: full weights, dtype,
    # tokenizer, settings; plus this server's chat template and context): `fingerprint` in
    # /v1/models and `system_fingerprint` in every answer, so clients never confuse two.
    fingerprint: str | None = None


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
            # A prompt far too long is counted from a prefix: its count is then a lower bound.
            raise ApiError(
                400,
                f"this model's maximum context length is {limit} tokens, but the prompt has "
                f"at least {prompt_tokens} tokens; shorten the prompt",
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

    def prompt_counts(self, prompts: Sequence[str | tuple[int, ...]]) -> list[int | None]:
        """(worker thread) Each completion prompt's token count, None when not known."""
        counts: list[int | None] = []
        for p in prompts:
            if isinstance(p, tuple):
                self.check_token_ids(p)
                counts.append(len(p))
            elif self.prompter is not None:
                counts.append(self.prompter.count_for_context(p, add_special_tokens=True))
            else:
                counts.append(None)
        return counts

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
            return None, prompter.count_for_context("\n\n".join(m.content for m in messages))
        try:
            rendered = prompter.render_chat(messages)
        except Exception as exc:  # a template that rejects this conversation (roles, order)
            raise ApiError(400, f"the chat template rejected these messages: {exc}", param="messages") from None
        if prompter.chat_template is None:
            # The backend renders the tokenizer's template itself (as `proctor run --hf-path`
            # does); the rendered text holds the template's special tokens already.
            return None, prompter.count_for_context(rendered, add_special_tokens=False)
        # An override template: the backend gets the rendered text as a plain prompt.
        prompt = prompter.plain_prompt(rendered)
        return prompt, prompter.count_for_context(prompt)

    async def read_body(self, http: HttpRequest, model: type[B]) -> B:
        """The checks every generation endpoint starts with: key, JSON body, model name, n."""
        self.authorize(http)
        # Parsing, like tokenizing, runs off the event loop: a huge body must not stall other clients.
        body = await asyncio.to_thread(parse_body, await http.body(), model)
        self.check_model(body.model)
        if body.n != 1 and body.stream:
            raise ApiError(400, f"n={body.n} is not supported with stream=true", param="n", code="invalid_value")
        return body

    def card(self) -> dict[str, Any]:
        settings = self.settings
        card = model_card(settings.model_name, settings.model_created or self.created)
        if settings.model_root:
            card["root"] = settings.model_root
        if settings.fingerprint:
            card["fingerprint"] = settings.fingerprint
        return card

    def stamp(self) -> dict[str, Any]:
        """The fields every answer (and chunk) carries besides its content."""
        stamp: dict[str, Any] = {"created": now(), "model": self.settings.model_name}
        if self.settings.fingerprint:
            stamp["system_fingerprint"] = self.settings.fingerprint
        return stamp

    def check_token_ids(self, ids: tuple[int, ...]) -> None:
        """Token-id prompts need the tokenizer, and ids it knows."""
        if self.prompter is None or not self.batcher.supports_token_logprobs:
            raise ApiError(400, "this server cannot take token-id prompts; send text", param="prompt")
        vocab = len(self.prompter.tokenizer)
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise ApiError(400, f"token id {bad} is out of range (the vocabulary has {vocab} tokens)",
                           param="prompt", code="invalid_value")


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
        return {"object": "list", "data": [state.card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, http: HttpRequest) -> dict[str, Any]:
        state.authorize(http)
        state.check_model(model_id)
        return state.card()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(http: HttpRequest) -> dict[str, Any] | StreamingResponse:
        body = await state.read_body(http, ChatCompletionRequest)
        if body.logprobs:
            raise ApiError(400, "logprobs are not supported on chat completions; use /v1/completions", param="logprobs")
        request, prompt_tokens = await asyncio.to_thread(state.chat_request, body)
        if body.stream:
            return _stream(_chat_chunks(state, request, prompt_tokens, body.include_usage()))
        results = await wait_for_client(
            http, asyncio.gather(*(state.generate(request, prompt_tokens) for _ in range(body.n)))
        )
        return {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            **state.stamp(),
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
                for index, result in enumerate(results)
            ],
            # The prompt is counted once, however many choices it has (as OpenAI does).
            "usage": usage(results[0].prompt_tokens, sum(r.completion_tokens for r in results)),
        }

    @app.post("/tokenize")
    async def tokenize(http: HttpRequest) -> dict[str, Any]:
        """Token count of a prompt or a chat (as vLLM's /tokenize): clients fit prompts with it."""
        state.authorize(http)
        body = parse_body(await http.body(), TokenizeRequest)
        state.check_model(body.model)
        if state.prompter is None:
            raise ApiError(400, "this server has no tokenizer to count with", code="not_supported")
        if (body.prompt is None) == (body.messages is None):
            raise ApiError(400, "give either `prompt` or `messages`", param="prompt")
        if body.messages is not None:
            messages = tuple(m.to_message(i) for i, m in enumerate(body.messages))
            # The count a chat request gets (its template, its BOS), computed off the event loop.
            _, count = await asyncio.to_thread(state._chat_prompt, messages)
        else:
            count = await asyncio.to_thread(state.count, body.prompt or "", add_special_tokens=body.add_special_tokens)
        return {"count": count, "max_model_len": state.prompter.max_seq_len}

    @app.post("/v1/completions", response_model=None)
    async def completions(http: HttpRequest) -> dict[str, Any] | StreamingResponse:
        body = await state.read_body(http, CompletionRequest)
        prompts = body.prompts()
        if body.logprobs is not None and not state.batcher.supports_logprobs:
            raise ApiError(400, "this backend cannot return logprobs", param="logprobs")
        if body.stream and len(prompts) > 1:
            raise ApiError(400, "stream=true takes a single prompt", param="prompt")
        counts = await asyncio.to_thread(state.prompt_counts, prompts)
        budgets = [state.budget(c, body.max_tokens, "prompt") for c in counts]
        if body.stream:
            return _stream(_completion_chunks(state, body, prompts[0], budgets[0], counts[0]))
        # Choices in OpenAI's order: the n choices of the first prompt, then of the next.
        work = [(p, m, c) for p, m, c in zip(prompts, budgets, counts) for _ in range(body.n)]
        answers = await wait_for_client(
            http, asyncio.gather(*(_complete(state, body, p, m, c) for p, m, c in work))
        )
        return {
            "id": new_id("cmpl"),
            "object": "text_completion",
            **state.stamp(),
            "choices": [{**choice, "index": index} for index, (choice, _) in enumerate(answers)],
            "usage": usage(
                sum(r.prompt_tokens for _, r in answers[:: body.n]), sum(r.completion_tokens for _, r in answers)
            ),
        }

    return app


def _generate_request(body: CompletionRequest, prompt: str, max_tokens: int) -> Request:
    """The backend request a /v1/completions body asks for, on a text prompt."""
    return Request(kind="generate", prompt=prompt, max_tokens=max_tokens,
                   temperature=body.sampling_temperature(), stop=body.stop_strings())


def _completion_choice(text: str, logprobs: Any, finish_reason: str | None) -> dict[str, Any]:
    """One `choices[]` entry of a /v1/completions answer (its index is set by the caller's order)."""
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


async def _complete(
    state: ServeState, body: CompletionRequest, prompt: str | tuple[int, ...], max_tokens: int,
    prompt_tokens: int | None,
) -> tuple[dict[str, Any], _Generated]:
    """One choice of a completion (and its counts): generate, then score the tokens when logprobs are asked."""
    if isinstance(prompt, tuple) or (body.logprobs or 0) > 1:
        return await _complete_exact(state, body, prompt, max_tokens, prompt_tokens)
    result = await state.generate(_generate_request(body, prompt, max_tokens), prompt_tokens)
    logprobs = None
    if body.logprobs is not None and (body.echo or result.text):
        scored: PromptLogprobs = await backend_call(state.batcher.prompt_logprobs(prompt + result.text))
        logprobs = completion_logprobs(scored, 0 if body.echo else len(prompt), len(prompt) + len(result.text))
        if prompt_tokens is None:  # the scorer tokenized the prompt; use its count
            result = replace(result, prompt_tokens=sum(1 for o in scored.offsets if o < len(prompt)))
    return _completion_choice((prompt if body.echo else "") + result.text, logprobs, result.finish_reason), result


async def _complete_exact(
    state: ServeState, body: CompletionRequest, prompt: str | tuple[int, ...], max_tokens: int,
    prompt_tokens: int | None,
) -> tuple[dict[str, Any], _Generated]:
    """A choice whose log-probs come from scoring exact token ids, with the top `logprobs`
    alternatives at each position: for token-id prompts (scored as sent, so a client reading
    the log-probs by position finds its own tokens) and for `logprobs` > 1.

    Generation itself runs on the text of the prompt (the ids decoded), as for any prompt.
    """
    from proctor.models.hf_loglikelihood import tokenize_prompt

    prompter = state.prompter
    if prompter is None or not state.batcher.supports_token_logprobs:
        raise ApiError(400, f"logprobs={body.logprobs} is not supported by this backend; use logprobs=1",
                       param="logprobs")
    tokenizer = prompter.tokenizer
    if isinstance(prompt, tuple):
        text = _decode_prompt(tokenizer, prompt)
        generation_prompt = prompter.plain_prompt(text)  # no second BOS when the tokenizer adds one
    else:
        text = generation_prompt = prompt
    top_k = max(1, body.logprobs or 1)
    if isinstance(prompt, tuple) and body.logprobs is not None and max_tokens == 1 and body.sampling_temperature() == 0:
        # lm-eval's scoring request (echo, logprobs, max_tokens=1): one forward pass scores the
        # prompt and gives the greedy next token, so every returned token is the model's own id.
        return _greedy_one(state, body, prompt, text, await backend_call(state.batcher.token_logprobs(prompt, top_k)))
    result = await state.generate(_generate_request(body, generation_prompt, max_tokens), prompt_tokens)
    logprobs = None
    if body.logprobs is not None:
        if isinstance(prompt, tuple):
            generated = tuple(tokenizer(result.text, add_special_tokens=False)["input_ids"]) if result.text else ()
            ids = prompt + generated
            tokens, offsets = _token_texts(tokenizer, ids)
            first = len(prompt)
        else:
            ids, offsets_t, _ = tokenize_prompt(tokenizer, text + result.text, prompter.max_seq_len)
            offsets = list(offsets_t)
            tokens = [tokenizer.decode([t]) for t in ids]
            first = continuation_start(offsets, len(text), len(text) + len(result.text))
        scored = await backend_call(state.batcher.token_logprobs(ids, max(1, body.logprobs)))
        top = [[(tokenizer.decode([t]), v) for t, v in position] for position in scored.top]
        if body.echo:
            first, shift = 0, 0
        else:
            shift = offsets[first] if first < len(offsets) else 0
            if not isinstance(prompt, tuple):
                shift = len(text)
        logprobs = token_logprobs_json(tokens, offsets, scored.logprobs, top, first, shift)
    return _completion_choice((text if body.echo else "") + result.text, logprobs, result.finish_reason), result


def _greedy_one(
    state: ServeState, body: CompletionRequest, prompt: tuple[int, ...], text: str, scored: Any
) -> tuple[dict[str, Any], _Generated]:
    """The choice of a one-token greedy completion of a token-id prompt, from its scoring pass."""
    assert state.prompter is not None
    tokenizer = state.prompter.tokenizer
    next_id, next_lp = scored.next_top[0]
    ids = prompt + (next_id,)
    tokens, offsets = _token_texts(tokenizer, ids)
    eos = next_id == tokenizer.eos_token_id
    generated = "" if eos else tokens[-1]
    cut = min((i for i in (generated.find(s) for s in body.stop_strings()) if i >= 0), default=-1)
    if cut >= 0:
        generated = generated[:cut]
    result = _Generated(generated, "stop" if eos or cut >= 0 else "length", len(prompt), 1)
    top = [[(tokenizer.decode([t]), v) for t, v in position] for position in (*scored.top, scored.next_top)]
    first = 0 if body.echo else len(prompt)
    shift = 0 if body.echo else offsets[-1]
    logprobs = token_logprobs_json(tokens, offsets, (*scored.logprobs, next_lp), top, first, shift)
    echoed = "".join(tokens[: len(prompt)]) if body.echo else ""
    choice = _completion_choice(echoed + generated, logprobs, result.finish_reason)
    return choice, result


def _decode_prompt(tokenizer: Any, ids: tuple[int, ...]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _token_texts(tokenizer: Any, ids: tuple[int, ...]) -> tuple[list[str], list[int]]:
    """The text of each token and its character offset, by decoding growing prefixes (exact
    where decoding one token alone is not: SentencePiece's leading spaces, a character split
    over byte tokens -- its first bytes get "", the token completing it the character).
    The tokens' texts joined are the decoded ids."""
    tokens: list[str] = []
    offsets: list[int] = []
    stable = ""
    for i in range(len(ids)):
        current = _decode_prompt(tokenizer, ids[: i + 1])
        if i < len(ids) - 1:
            current = current.rstrip("\ufffd")  # an unfinished character, completed later
        if not current.startswith(stable):  # decoding changed earlier text: keep it whole
            current = stable + current[len(stable):]
        offsets.append(len(stable))
        tokens.append(current[len(stable):])
        stable = current
    return tokens, offsets


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
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", **state.stamp()}

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
    base = {"id": new_id("cmpl"), "object": "text_completion", **state.stamp()}
    choice, result = await _complete(state, body, prompt, max_tokens, prompt_tokens)
    yield {**base, "choices": [{**choice, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": result.finish_reason}]}
    if body.include_usage():
        yield {**base, "choices": [], "usage": usage(result.prompt_tokens, result.completion_tokens)}
