"""How the API backend judges a failed answer: retry or not, and the one-line message (redacted)."""

from __future__ import annotations

import json
import os
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


class Unusable(Exception):
    """A response that will not get better by asking again (recorded as failed, not retried)."""


@dataclass(frozen=True)
class Failure:
    """One attempt that failed: why, and whether asking again may help."""

    message: str
    retryable: bool
    retry_after: float | None = None


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
        message = f"HTTP {status} {resp.reason_phrase}{server_message_part(resp, credentials)}"
        message = message.rstrip()
        if logprobs and 400 <= status < 500 and status != 429:
            message = (
                f"{no_prompt_logprobs(display_base)} (echo=true, logprobs=1, max_tokens=0): "
                f"{message}"
            )
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
        return Failure(message, retryable=status in RETRY_STATUSES, retry_after=retry_after)
    try:
        data = json.loads(resp.content)
    except ValueError:
        return Failure(f"HTTP {status} with a body that is not JSON", retryable=True)
    if isinstance(data, dict) and "choices" not in data and data.get("error"):
        # Some proxies answer 200 with an error body; it is worth another try.
        error = data["error"]
        said = error.get("message") if isinstance(error, dict) else error
        return Failure(f"HTTP {status} with an error: {credentials.redact(str(said))}", True)
    try:
        return parse(data)
    except Unusable as exc:
        return Failure(str(exc), retryable=False)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        return Failure(f"malformed response ({type(exc).__name__}: {exc})", retryable=True)


def no_prompt_logprobs(display_base: str) -> str:
    """The start of the message for an endpoint that cannot score a prompt."""
    return f"the endpoint {display_base}/completions does not return prompt log-probs"


def short_reason(exc: BaseException) -> str:
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


def server_message(resp: Reply, credentials: Credentials) -> str:
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
    text = " ".join(credentials.redact(text).split())
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[: _MAX_SERVER_MESSAGE - 3] + "..."
    return text


def server_message_part(resp: Reply, credentials: Credentials) -> str:
    """': <server message>', or '' when the server said nothing."""
    message = server_message(resp, credentials)
    return f": {message}" if message else ""


def auth_message(resp: Reply, shown_url: str, credentials: Credentials) -> str:
    """Why a 401/403 happened and what to do, naming where the key came from (never the key)."""
    status = f"{resp.status_code} {resp.reason_phrase}".strip()
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
