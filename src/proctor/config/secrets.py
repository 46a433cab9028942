"""Masking secrets that hide inside URLs before a config is written anywhere."""

from __future__ import annotations

import re
from typing import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"
_SECRET_PARAM = re.compile(r"key|token|secret|sig|password|auth", re.IGNORECASE)


def public_url(url: str) -> str:
    """The URL minus credentials, query, fragment, default port and trailing '/':
    how an endpoint is named in the manifest, logs and errors."""
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


def redact_url(url: str) -> str:
    """The URL with its password and secret-looking query values masked; the rest kept."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_SECRET_FLAGS = ("--api-key",)


def redact_argv(argv: Sequence[str] | None) -> list[str] | None:
    """A command line with the values of secret flags masked, and secrets in URLs."""
    if argv is None:
        return None
    out: list[str] = []
    hide = False
    for arg in argv:
        flag, eq, _ = arg.partition("=")
        if hide:
            out.append(MASK)
        elif eq and flag in _SECRET_FLAGS:
            out.append(f"{flag}={MASK}")
        elif "://" in arg:
            out.append(redact_url(arg))
        else:
            out.append(arg)
        hide = not hide and arg in _SECRET_FLAGS
    return out
