"""How the API backend judges a failed answer: retry or not, and the one-line message (redacted)."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from proctor.core import Response
from proctor.errors import BackendError
from proctor.models.retry import RETRY_AFTER_STATUSES, RETRY_STATUSES, parse_retry_after

if TYPE_CHECKING:
    from proctor.models.api_credentials import Credentials
    from proctor.models.api_http import Reply

_MAX_SERVER_MESSAGE = 300

# C0/C1 control characters (ESC starts ANSI/OSC sequences) and the invisible bidi overrides
# that can make a terminal line read differently from what it holds.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text from a server made safe for a terminal: control characters escaped (\\x1b)."""
    return _UNPRINTABLE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


class Unusable(Exception):
    """A response that will not get better by asking again (recorded as failed, not retried)."""


@dataclass(frozen=True)
class Failure:
    """One attempt that failed: why, and whether asking again may help."""

    message: str
    retryable: bool
    retry_after: float | None = None
    status: int | None = None  # the HTTP status, when the server answered


def classify_reply(
    resp: Reply,
    parse: Callable[[Any], Response],
    credentials: Credentials,
    *,
    shown_url: str,
    display_base: str,
    logprobs: bool,
) -> Response | Failure:
    """The Response of a reply, or a Failure saying whether to retry; BackendError on 401/403."""
    status = resp.status_code
    if status in (401, 403):
        raise BackendError(auth_message(resp, shown_url, credentials))
    if status >= 300:
        said = server_message(resp, credentials)
        message = f"HTTP {status} {printable(resp.reason_phrase)}{': ' + said if said else ''}"
        message = message.rstrip()
        if 400 <= status < 500 and error_code(resp) == "content_filter":
            # Azure refuses a filtered prompt with 400 content_filter: an answer, not a failure.
            return Response(text="", finish_reason="content_filter")
        if status in (400, 413, 422) and is_context_length(resp, said):
            # Never better on another try, and not a missing-log-probs problem either.
            return Failure(context_length_message(said, message), retryable=False)
        if logprobs and 400 <= status < 500 and status != 429:
            message = (
                f"{no_prompt_logprobs(display_base)} (echo=true, logprobs=1, max_tokens=0): "
                f"{message}"
            )
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
        return Failure(message, retryable=status in RETRY_STATUSES, retry_after=retry_after, status=status)
    try:
        data = json.loads(resp.content)
    except ValueError:
        return Failure(f"HTTP {status} with a body that is not JSON", retryable=True)
    if isinstance(data, dict) and "choices" not in data and data.get("error"):
        # Some proxies answer 200 with an error body; it is worth another try.
        error = data["error"]
        said = error.get("message") if isinstance(error, dict) else error
        said = printable(" ".join(credentials.redact(str(said)).split()))[:_MAX_SERVER_MESSAGE]
        message = f"HTTP {status} with an error: {said}"
        if says_context_length(said):
            return Failure(context_length_message(said, message), retryable=False)
        return Failure(message, True)
    try:
        return parse(data)
    except Unusable as exc:
        return Failure(str(exc), retryable=False)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        detail = printable(credentials.redact(str(exc)))[:_MAX_SERVER_MESSAGE]
        return Failure(f"malformed response ({type(exc).__name__}: {detail})", retryable=True)


def error_body(resp: Reply) -> dict[str, Any]:
    """The `error` object of an OpenAI-style error body ({} when there is none)."""
    try:
        data = json.loads(resp.content)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    error = data.get("error")
    if isinstance(error, dict):
        return error
    # vLLM (before 0.9) and others answer {"object": "error", "message": ..., "code": 404}.
    return data if "message" in data else {}


def error_code(resp: Reply) -> str | None:
    """The `error.code` (or `error.type`) of an error body, lower-cased; None if absent."""
    error = error_body(resp)
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and value:
            if key == "type" and value in ("invalid_request_error", "server_error", "requests"):
                continue  # OpenAI's broad error classes say nothing specific
            return value.lower()
    return None


_MODEL_NOT_FOUND = re.compile(
    r"model\b.*\b(does not exist|not found|not exist|is not served|unknown|no such)"
    r"|(unknown|invalid|no such) model",
    re.IGNORECASE,
)


def is_model_not_found(resp: Reply) -> bool:
    """A 404 (or 400) saying the model id is not served: true for every request alike."""
    if resp.status_code not in (400, 404):
        return False
    if error_code(resp) in ("model_not_found", "model_not_exist", "modelnotfound"):
        return True
    if resp.status_code != 404:
        return False
    return bool(_MODEL_NOT_FOUND.search(server_message_raw(resp)))


_MAX_CONTEXT = re.compile(
    r"(?:context|sequence)\s+(?:length|window|size)\s+(?:is\s+|of\s+)?(?:only\s+)?(\d[\d,]*)",
    re.IGNORECASE,
)
_REQUESTED = re.compile(
    r"(?:requested|resulted in|has|contains|got)\s+(?:about\s+)?(\d[\d,]*)\s*(?:input\s+)?tokens",
    re.IGNORECASE,
)


def is_context_length(resp: Reply, said: str) -> bool:
    """A 400 saying the prompt does not fit the model's context."""
    if error_code(resp) in ("context_length_exceeded", "string_above_max_length"):
        return True
    return says_context_length(said)


def says_context_length(said: str) -> bool:
    """Whether an error message says the prompt is longer than the model's context."""
    lowered = said.lower()
    return ("context" in lowered and ("length" in lowered or "window" in lowered)) or (
        "too long" in lowered and "token" in lowered
    ) or "maximum sequence length" in lowered


def context_length_message(said: str, fallback: str) -> str:
    """One line: the prompt is longer than the context, with the lengths when the server gave them."""
    limit = _MAX_CONTEXT.search(said)
    asked = _REQUESTED.search(said)
    numbers = []
    if asked:
        numbers.append(f"{asked.group(1).replace(',', '')} tokens")
    if limit:
        numbers.append(f"the limit is {limit.group(1).replace(',', '')}")
    lengths = f" ({', '.join(numbers)})" if numbers else ""
    return f"the prompt is longer than the model's context{lengths}; not retried: {fallback}"


def no_prompt_logprobs(display_base: str) -> str:
    """The start of the message for an endpoint that cannot score a prompt."""
    return f"the endpoint {display_base}/completions does not return prompt log-probs"


def short_reason(exc: BaseException) -> str:
    """A few words on why a connection failed, from the deepest OS error the client wraps."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not c for c in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    import ssl

    for current in chain:
        # aiohttp's DNS error is an OSError with getaddrinfo's negative errno: "unknown error -2".
        if isinstance(current, socket.gaierror) or (isinstance(current, OSError) and (current.errno or 0) < 0):
            return "host name not found"
        if isinstance(current, ssl.SSLError):
            return "TLS handshake failed (an https:// URL for an http:// server? try http://)"
    for current in chain:
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # asyncio words a refused connection "Connect call failed (...)"; errno is clearer.
            return (os.strerror(current.errno) if current.errno else str(current.strerror)).lower()
    text = str(exc).strip()
    return text or type(exc).__name__


def server_message_raw(resp: Reply) -> str:
    """The server's error message, unredacted and unsanitized (for matching, never shown)."""
    error = error_body(resp)
    message = error.get("message")
    return str(message) if message else resp.text


def server_message(resp: Reply, credentials: Credentials) -> str:
    """The error message of an OpenAI-style error body, else the start of the body
    (secrets redacted, control characters escaped, one line)."""
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
    text = printable(" ".join(credentials.redact(text).split()))
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[: _MAX_SERVER_MESSAGE - 3] + "..."
    return text


def server_message_part(resp: Reply, credentials: Credentials) -> str:
    """': <server message>', or '' when the server said nothing."""
    message = server_message(resp, credentials)
    return f": {message}" if message else ""


def auth_message(resp: Reply, shown_url: str, credentials: Credentials) -> str:
    """Why a 401/403 happened and what to do, naming where the key came from (never the key)."""
    status = f"{resp.status_code} {printable(resp.reason_phrase)}".strip()
    said = server_message(resp, credentials)
    said = f" ({said})" if said else ""
    source = credentials.key_source
    if credentials.key is None:
        advice = (
            f"{source} is not set; export the API key in it or name another "
            "variable with --api-key-env"
        )
    elif resp.status_code == 403:
        advice = f"the key from {source} is not allowed to use this model or endpoint"
    else:
        advice = (
            f"the key from {source} was rejected; check it or name another "
            "variable with --api-key-env"
        )
    return f"server at {shown_url} answered {status}{said}: {advice}"
