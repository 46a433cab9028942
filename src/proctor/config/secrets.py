"""Masking secrets that hide inside URLs before a config is written anywhere."""

from __future__ import annotations

import re
from typing import Iterable, Sequence
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


# A run of this many characters of a secret is masked wherever it appears: a server that echoes
# "...key ending in 9f3kq0aZ1x" gives away that much of the key.
SECRET_PART_MIN = 8
_SHOWN_MASK = "***"


def mask_secrets(text: str, secrets: Iterable[str], *, min_part: int = SECRET_PART_MIN) -> str:
    """Text with every secret masked, and every run of `min_part` or more characters that is a
    part of one (a prefix, the tail, the middle; in any letter case). A secret shorter than
    `min_part` is masked where it appears whole."""
    secrets = [s for s in secrets if s]
    if not text or not secrets:
        return text
    folded = text.lower()
    if len(folded) != len(text):  # a letter whose lower case is longer: match case as written
        folded = text
    covered = bytearray(len(text))
    for secret in secrets:
        part = secret.lower() if folded is not text else secret
        if len(part) < min_part:
            start = folded.find(part)
            while start >= 0:
                covered[start : start + len(part)] = b"\x01" * len(part)
                start = folded.find(part, start + 1)
            continue
        # Every common run of min_part+ characters is covered by its min_part-long windows.
        windows = {part[i : i + min_part] for i in range(len(part) - min_part + 1)}
        for i in range(len(folded) - min_part + 1):
            if folded[i : i + min_part] in windows:
                covered[i : i + min_part] = b"\x01" * min_part
    if not any(covered):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(_SHOWN_MASK)
        else:
            start = i
            while i < len(text) and not covered[i]:
                i += 1
            out.append(text[start:i])
    return "".join(out)


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
