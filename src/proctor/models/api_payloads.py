"""OpenAI-style request bodies for each Request, and the parsing of their answers into Responses."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

from proctor.core import Request, Response
from proctor.models.api_errors import Unusable, no_prompt_logprobs
from proctor.models.hf_spans import continuation_logprob, continuation_start  # the shared rule; pure Python

if TYPE_CHECKING:
    from proctor.models.api_http import Reply

Parser = Callable[[Any], Response]
# The path to POST to (None: nothing to ask), the JSON body, and the parser of the answer.
Plan = tuple[str | None, dict[str, Any], Parser]


def plan_request(
    request: Request, *, model: str | None, chat: bool, display_base: str, settings: dict[str, Any] | None = None
) -> Plan:
    """The path, JSON body and response parser of one request; Unusable if it cannot be sent.

    `settings`: the model config's additions to a generate body (`reasoning_effort`, its
    `extra_body` fields; `max_tokens_field: max_completion_tokens` renames the budget).
    """
    if request.kind == "loglikelihood":
        return _plan_loglikelihood(request, model=model, display_base=display_base)
    if request.kind != "generate":
        raise Unusable(f"unknown request kind {request.kind!r}")
    body: dict[str, Any] = {"model": model}
    if chat:
        if request.messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        elif request.prompt is not None:
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            raise Unusable("generate request has neither messages nor prompt")
        path = "/chat/completions"
    else:
        if request.prompt is None:
            raise Unusable(
                "completions model got a chat request (messages, no prompt); "
                "render the prompt as text for api_type='completions'"
            )
        body["prompt"] = request.prompt
        path = "/completions"
    extra = dict(settings or {})
    body[extra.pop("max_tokens_field", "max_tokens")] = request.max_tokens
    body["temperature"] = request.temperature
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:  # a repeat: OpenAI, vLLM and SGLang servers take a per-request seed
        body["seed"] = request.seed
    if request.top_logprobs and chat:  # a judge whose verdict is read from the first token's log-probs
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    for key, value in extra.items():  # the config refuses keys set above (schema._OWN_BODY_KEYS)
        body.setdefault(key, value)
    return path, body, parse_chat if chat else parse_completion


def _plan_loglikelihood(request: Request, *, model: str | None, display_base: str) -> Plan:
    """One echo request scoring context + each continuation (prompt log-probs, no new tokens)."""
    context = request.context or ""
    continuations = request.continuations
    if not continuations:
        return (
            None,
            {},
            lambda _: Response(loglikelihoods=(), continuation_lengths=(), attempts=0),
        )
    body = {
        "model": model,
        "prompt": [context + c for c in continuations],
        "echo": True,
        "logprobs": 1,
        "max_tokens": 0,
        "temperature": 0,
    }

    def parse(data: Any) -> Response:
        return parse_loglikelihood(data, context, continuations, display_base)

    return "/completions", body, parse


def encode_body(body: dict[str, Any]) -> bytes:
    """The compact UTF-8 JSON sent on the wire."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


CONTENT_FILTER = "content_filter"
REFUSED = "refused"


def _first_choice(data: Any) -> Any:
    choices = data["choices"]
    if not choices:
        raise ValueError("the answer has no choices")
    return choices[0]


def _filtered_prompt(data: Any) -> Response | None:
    """Azure's answer to a filtered prompt: no choices, only `prompt_filter_results`."""
    if isinstance(data, dict) and not data.get("choices") and data.get("prompt_filter_results"):
        prompt_tokens, _ = _usage(data)
        return Response(text="", prompt_tokens=prompt_tokens, completion_tokens=0,
                        finish_reason=CONTENT_FILTER)
    return None


def parse_chat(data: Any) -> Response:
    """The Response of a /chat/completions answer.

    An answer the server withheld is a Response with text "" and a finish_reason that
    says so, never a failure to retry: "refused" when the message carries a `refusal`,
    "content_filter" when the server says so or sends `content: null` with no reasoning
    (without another reason, such as "length"). A reasoning model's thought, in the
    message's `reasoning_content` (vLLM, DeepSeek) or `reasoning` (OpenRouter, Ollama)
    field, is kept apart in `reasoning`: with `content: null` beside it the reply is a
    thought without an answer (proctor.reasoning decides: truncated or no_answer), not a
    withheld one.
    """
    filtered = _filtered_prompt(data)
    if filtered is not None:
        return filtered
    choice = _first_choice(data)
    message = choice.get("message")
    if message is None:  # some filters drop the message altogether
        message = {}
    if not isinstance(message, dict):
        raise TypeError(f"message is {type(message).__name__}")
    content = message.get("content")
    thought_parts = ""
    if isinstance(content, list):  # content parts: the text ones; thinking parts are reasoning
        parts = [p for p in content if isinstance(p, dict)]
        thought_parts = "".join(_part_text(p) for p in parts if p.get("type") in _THOUGHT_PARTS)
        content = "".join(p.get("text", "") for p in parts if p.get("type") not in _THOUGHT_PARTS)
    if content is not None and not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}")
    reason = _finish_reason(choice)
    reasoning = _message_reasoning(message)
    if thought_parts.strip():
        reasoning = thought_parts if reasoning is None else f"{reasoning}\n{thought_parts}"
    if message.get("refusal"):
        reason = REFUSED
    elif content is None and reasoning is None and reason in (None, "stop", CONTENT_FILTER):
        reason = CONTENT_FILTER
    prompt_tokens, completion_tokens = _usage(data)
    return Response(
        text=content or "",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=reason,
        reasoning=reasoning,
        reasoning_tokens=_reasoning_tokens(data),
        top_logprobs=_first_token_logprobs(choice),
    )


def _first_token_logprobs(choice: dict[str, Any]) -> tuple[tuple[str, float], ...] | None:
    """The first generated token's `top_logprobs` (OpenAI's `choices[0].logprobs.content[0]`), as
    (token, log-probability) pairs; None when the server sent none or in another shape."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    top = content[0].get("top_logprobs")
    if not isinstance(top, list):
        return None
    pairs = []
    for entry in top:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None
        value = entry.get("logprob")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value > 0:
            return None  # not a log-probability: read nothing from it
        pairs.append((entry["token"], float(value)))
    return tuple(pairs)


# Where OpenAI-compatible servers put a reasoning model's thought: vLLM's and SGLang's reasoning
# parsers and DeepSeek use `reasoning_content`, OpenRouter, Ollama and newer vLLM `reasoning`.
_REASONING_FIELDS = ("reasoning_content", "reasoning")


# Content parts that hold a thought, not the answer (servers that pass a model's thinking
# blocks through as typed parts).
_THOUGHT_PARTS = ("reasoning", "thinking", "reasoning_text")


def _part_text(part: dict[str, Any]) -> str:
    value = part.get("text", part.get("thinking", ""))
    if isinstance(value, list):  # Mistral's thinking chunk: {"type": "thinking", "thinking": [{"type": "text", ...}]}
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return value if isinstance(value, str) else ""


def _message_reasoning(message: dict[str, Any]) -> str | None:
    """The thought a server returned apart from the answer (text only), or None."""
    parts = []
    for name in _REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, list):  # reasoning parts, like content parts
            value = "".join(p.get("text", "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
        if isinstance(value, str) and value.strip() and value not in parts:
            parts.append(value)
    return "\n".join(parts) if parts else None


def _reasoning_tokens(data: Any) -> int | None:
    """`usage.completion_tokens_details.reasoning_tokens` when the server reports it."""
    usage = data.get("usage") if isinstance(data, dict) else None
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_completion(data: Any) -> Response:
    """The Response of a /completions answer (`text: null` of a filtered answer: "")."""
    filtered = _filtered_prompt(data)
    if filtered is not None:
        return filtered
    choice = _first_choice(data)
    text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"choice text is {type(text).__name__}")
    reason = _finish_reason(choice)
    if text is None and reason in (None, "stop", CONTENT_FILTER):
        reason = CONTENT_FILTER
    prompt_tokens, completion_tokens = _usage(data)
    return Response(
        text=text or "",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=reason,
        reasoning_tokens=_reasoning_tokens(data),
    )


# Other names servers give the token limit: Mistral's "model_length" (the context ran out),
# Anthropic-style "max_tokens" through gateways that pass it on. Each is a cut-off reply.
_LENGTH_REASONS = frozenset({"model_length", "max_tokens"})


def _finish_reason(choice: Any) -> str | None:
    reason = choice.get("finish_reason")
    if not isinstance(reason, str):
        return None
    return "length" if reason in _LENGTH_REASONS else reason


def parse_loglikelihood(
    data: Any, context: str, continuations: Sequence[str], display_base: str
) -> Response:
    """Sum the log-probs of the continuation tokens (contracts.md, log-likelihood rule).

    A token straddling the end of the context counts as continuation, e.g. " A" in
    "Answer: " + "A": the same tokens the HF backend sums when scoring directly.
    """
    choices = data["choices"]
    if len(choices) != len(continuations):
        raise ValueError(f"{len(choices)} choices for {len(continuations)} prompts")
    by_index = {
        (c["index"] if isinstance(c.get("index"), int) else pos): c for pos, c in enumerate(choices)
    }
    start = len(context)
    sums: list[float] = []
    lengths: list[int] = []
    for i, continuation in enumerate(continuations):
        logprobs = by_index[i].get("logprobs")
        if not isinstance(logprobs, dict) or logprobs.get("text_offset") is None:
            raise Unusable(
                f"{no_prompt_logprobs(display_base)} (no logprobs.text_offset with echo=true)"
            )
        offsets = logprobs["text_offset"]
        values = logprobs["token_logprobs"]
        if len(offsets) != len(values):
            raise ValueError("text_offset and token_logprobs differ in length")
        _check_logprobs(offsets, values, start, start + len(continuation))
        # The same rule `proctor serve` clients use: tokens past the prompt (a server that
        # ignored max_tokens=0) and the first token's missing log-prob are never counted.
        total, count = continuation_logprob(offsets, values, start, start + len(continuation))
        if continuation and not count:  # an empty sum (0.0) would beat every real option
            raise ValueError(f"no log-prob for any token of the continuation {continuation!r}")
        sums.append(total)
        lengths.append(count)
    prompt_tokens, _ = _usage(data)
    return Response(
        loglikelihoods=tuple(sums),
        continuation_lengths=tuple(lengths),
        prompt_tokens=prompt_tokens,
        completion_tokens=0,
    )


def _check_logprobs(offsets: Sequence[Any], values: Sequence[Any], context_len: int, text_len: int) -> None:
    """Every log-prob of a continuation token is a number <= 0 (or -inf): a null one would be
    left out of the sum, a NaN or positive one would decide the option. ValueError otherwise
    (a malformed answer: retried, then a failed record, never scored)."""
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
        raise ValueError("text_offset holds something other than integers")
    if any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ValueError("text_offset goes backwards: the tokens cannot be placed in the text")
    first = continuation_start(offsets, context_len, text_len)
    for j in range(first, len(values)):
        if offsets[j] >= text_len:
            break
        value = values[j]
        if value is None and j == 0:
            continue  # the first token of the prompt has no log-prob
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value > 1e-3:
            raise ValueError(f"token_logprobs[{j}] of a continuation token is {value!r}, not a log-probability")


def model_entries(resp: Reply) -> list[dict[str, Any]] | None:
    """The model objects (with a string id) of a /models answer; None when it is not a list."""
    if resp.status_code != 200:
        return None
    try:
        data = json.loads(resp.content)
    except ValueError:
        return None
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return None
    return [item for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]


def model_ids(resp: Reply) -> list[str] | None:
    """Model ids of a /models answer; None when the answer is not a model list."""
    entries = model_entries(resp)
    return None if entries is None else [item["id"] for item in entries]


def system_fingerprint(data: Any) -> str | None:
    """The `system_fingerprint` of an answer (the server's build/config), when it sends one."""
    value = data.get("system_fingerprint") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _usage(data: Any) -> tuple[int | None, int | None]:
    """(prompt_tokens, completion_tokens) of the usage block, None where absent or not ints."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )
