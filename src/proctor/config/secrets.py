"""Masking secrets that hide inside URLs before a config is written anywhere."""

from __future__ import annotations

import re
from typing import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"
_SECRET_PARAM = re.compile(r"key|token|secret|sig|password|auth", re.IGNORECASE)
# An HTTP credential as it appears in a header or an echoed error: `Basic <base64 user:pass>`,
# `Bearer <token>` (the scheme word is case-insensitive in HTTP).
_AUTH_VALUE = re.compile(r"\b(Basic|Bearer)(\s+)([A-Za-z0-9+/=._~-]{3,})", re.IGNORECASE)


def mask_auth(text: str) -> str:
    """Text with the credentials of `Basic ...` / `Bearer ...` authorization values masked
    (a lower-case word after them, as in "Basic auth", is prose and kept)."""

    def mask(m: re.Match[str]) -> str:
        value = m.group(3)
        if value.isalpha() and value.islower():
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{MASK}"

    return _AUTH_VALUE.sub(mask, text)


def public_query(query: str) -> str:
    """A URL query minus secret-looking parameters (api-key, sig, token, ...), order kept."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if not _SECRET_PARAM.search(k)])


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
            out.append(mask_auth(redact_url(arg)))
        else:
            out.append(mask_auth(arg))
        hide = not hide and arg in _SECRET_FLAGS
    return out
