"""OpenAI request shapes, error bodies and response objects, as the official client expects them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proctor.core import Message
from proctor.models.base import PromptLogprobs
from proctor.models.hf_spans import continuation_start


class ApiError(Exception):
    """An OpenAI-style error: HTTP status plus `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# --- requests ---------------------------------------------------------------


class _Body(BaseModel):
    # Unknown OpenAI parameters (user, top_p, presence_penalty, ...) are accepted
    # and ignored, as vLLM does, so that clients written for OpenAI work unchanged.
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def to_message(self, index: int) -> Message:
        if self.content is None:
            text = ""
        elif isinstance(self.content, str):
            text = self.content
        else:
            parts = []
            for part in self.content:
                if part.type != "text" or part.text is None:
                    raise ApiError(
                        400,
                        f"messages[{index}].content: only text parts are supported, got '{part.type}'",
                        param=f"messages.{index}.content",
                    )
                parts.append(part.text)
            text = "".join(parts)
        # OpenAI's newer "developer" role is the system prompt under another name.
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=text)


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None  # accepted, ignored: results are deterministic at temperature 0

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    def sampling_temperature(self) -> float:
        """The temperature to use: OpenAI's default 1.0 when the client sent none (or null)."""
        return 1.0 if self.temperature is None else self.temperature

    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (`stream_options.include_usage`)."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class TokenizeRequest(_Body):
    """vLLM's POST /tokenize: a prompt, or chat messages rendered as /v1/chat/completions would."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True


class CompletionRequest(_Generation):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)

    def prompts(self) -> list[str | tuple[int, ...]]:
        """The prompts: texts, or token-id sequences (`[791, 4320]` is one, `[[...], [...]]` several)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if not prompt:
            raise ApiError(400, "prompt must not be an empty list", param="prompt")
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)  # type: ignore[arg-type]
        if all(isinstance(p, int) for p in prompt):
            return [tuple(prompt)]  # type: ignore[arg-type]
        if all(isinstance(p, list) for p in prompt):
            if any(not p for p in prompt):
                raise ApiError(400, "a token-id prompt must not be empty", param="prompt")
            return [tuple(p) for p in prompt]  # type: ignore[union-attr]
        raise ApiError(
            400, "prompt must be a string, a list of strings, or token ids (a list of ints, or of lists)",
            param="prompt",
        )


_TOO_DEEP = "the request body is nested too deeply to read; send a flatter JSON object"


def parse_body(raw: bytes, model: type[BaseModel]) -> Any:
    """Parse and validate a JSON body, turning every failure into a 400 ApiError."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, _TOO_DEEP) from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ApiError(400, _TOO_DEEP) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        # Pydantic tries each member of a union; the top-level field is what the user got wrong.
        param = str(first["loc"][0]) if first["loc"] else None
        message = f"{loc}: {first['msg']}" if loc else first["msg"]
        if first["type"] == "missing":
            message = f"missing required parameter '{loc}'"
        raise ApiError(400, message, param=param, code="invalid_value") from None


# --- responses ---------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "proctor"}


def completion_logprobs(scored: PromptLogprobs, start: int = 0, text_len: int = 0) -> dict[str, Any]:
    """OpenAI `choices[i].logprobs` for the tokens from character `start` on.

    `start` 0 (echo): every token of the scored text. Otherwise the tokens of the
    text after the prompt (the scored text has `text_len` characters), chosen by
    the continuation rule of contracts.md, with offsets relative to the returned
    text. Only the chosen token is known (the backend gives no alternatives), so
    `top_logprobs` holds just that token at each position.
    """
    first = 0
    if start > 0:
        first = continuation_start(scored.offsets, start, text_len)
    tokens = list(scored.tokens[first:])
    token_logprobs = list(scored.logprobs[first:])
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": [None if lp is None else {t: lp} for t, lp in zip(tokens, token_logprobs)],
        "text_offset": [max(0, o - start) for o in scored.offsets[first:]],
    }


def token_logprobs_json(
    tokens: list[str],
    offsets: list[int],
    logprobs: Sequence[float | None],
    top: Sequence[Sequence[tuple[str, float]]],
    first: int,
    shift: int,
) -> dict[str, Any]:
    """OpenAI `choices[i].logprobs` of the tokens from index `first` on, offsets less `shift`.

    `top[j]` holds the most likely tokens at position j (best first); the token itself is
    added when it is not among them (as vLLM does), so `max(top.values())` tells whether
    the token was the greedy choice.
    """
    tops: list[dict[str, float] | None] = []
    for j in range(first, len(tokens)):
        if logprobs[j] is None:
            tops.append(None)
            continue
        alternatives = {text: value for text, value in top[j]}
        alternatives.setdefault(tokens[j], float(logprobs[j]))  # type: ignore[arg-type]
        tops.append(alternatives)
    return {
        "tokens": tokens[first:],
        "token_logprobs": list(logprobs[first:]),
        "top_logprobs": tops,
        "text_offset": [max(0, o - shift) for o in offsets[first:]],
    }


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event line pair."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"
