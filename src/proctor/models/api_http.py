"""The HTTP transport of the API backend: one aiohttp session per event loop, TLS and proxy."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from proctor.models.ratelimit import RateLimiter, TokenRateLimiter
from proctor.models.slots import AdaptiveLimit, ConcurrencyLimit

if TYPE_CHECKING:  # aiohttp and pydantic are imported lazily: `proctor --help` must stay fast
    import ssl

    import aiohttp

    from proctor.config.schema import ApiModelConfig
    from proctor.models.api_credentials import Credentials


@dataclass(frozen=True)
class Reply:
    """An HTTP answer read in full (what the parsing helpers need, whatever the client)."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass
class LoopState:
    """What must be created inside the running event loop, once per backend and loop."""

    loop: asyncio.AbstractEventLoop
    slots: ConcurrencyLimit  # the concurrency limit, shared by every process() call
    limiter: RateLimiter | None
    tokens: TokenRateLimiter | None
    session: aiohttp.ClientSession
    proxy: str | None  # chosen once from the environment (no lookup per request)
    urls: dict[str, Any] = field(default_factory=dict)  # yarl.URL parsed once per endpoint
    timeout: float | None = None  # the deadline of one whole exchange, body included


def open_loop_state(base: str, credentials: Credentials, config: ApiModelConfig) -> LoopState:
    """A new session, slots and limiter for the running loop, sending to base."""
    import aiohttp

    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": f"proctor/{_version()}",
    }
    authorization = credentials.authorization()
    if authorization is not None:
        headers["Authorization"] = authorization
    size = config.max_concurrency
    # One session, one pool: aiohttp hands out pooled connections in constant time
    # (unlike httpcore's pool, which scans every connection on each request), and its
    # C HTTP parser costs a fraction of the CPU of httpx per request. Cookies are
    # not kept: an API needs none, and the jar costs CPU on every response.
    connector = aiohttp.TCPConnector(
        limit=size,
        limit_per_host=0,
        ssl=ssl_context() if base.lower().startswith("https:") else True,
    )
    timeout = config.timeout
    session = aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        cookie_jar=aiohttp.DummyCookieJar(),
        # `timeout` bounds the whole exchange (connect, send, headers and body): a server
        # trickling a byte at a time cannot keep a request alive past it.
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout, sock_read=timeout),
    )
    return LoopState(
        loop=asyncio.get_running_loop(),
        slots=AdaptiveLimit(size, start=config.adaptive_start) if config.adaptive else ConcurrencyLimit(size),
        limiter=RateLimiter.from_limits(config.qps, config.rpm),
        tokens=TokenRateLimiter(config.tpm) if config.tpm is not None else None,
        session=session,
        proxy=environment_proxy(base),
        timeout=timeout,
    )


async def exchange(
    state: LoopState, method: str, url: str, content: bytes | None = None
) -> Reply:
    """One request on the shared session, body read in full; redirects are not followed.

    The whole exchange, reading the body included, ends within `state.timeout` seconds
    (TimeoutError otherwise), however slowly the server sends.
    """
    import yarl

    parsed = state.urls.get(url)
    if parsed is None:
        parsed = state.urls[url] = yarl.URL(url)
    async with asyncio.timeout(state.timeout):
        async with state.session.request(
            method, parsed, data=content, proxy=state.proxy, allow_redirects=False
        ) as response:
            body = await response.read()
            return Reply(response.status, response.reason or "", response.headers, body)


def abandon(state: LoopState) -> None:
    """Let go of the session of a loop other than the running one (asyncio.run called again)."""
    if not state.loop.is_closed():
        return  # that loop may still use it (requests in flight in another thread)
    # The loop has ended: its connections cannot be closed any more. Mark session and
    # connector closed so that aiohttp does not log "Unclosed ..." errors for them.
    connector = state.session.connector
    state.session.detach()
    close_now = getattr(connector, "_close", None)  # closes nothing once the loop is closed
    if close_now is not None:
        close_now()


def environment_proxy(url: str) -> str | None:
    """The proxy that $http(s)_proxy / $all_proxy / $no_proxy choose for url (urllib's rules)."""
    from urllib.request import getproxies_environment, proxy_bypass

    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


@cache
def ssl_context() -> ssl.SSLContext:
    """Verified TLS with $SSL_CERT_FILE / $SSL_CERT_DIR, else certifi's CA bundle (as httpx did).

    Made once per process: loading CA certificates is slow.
    """
    import ssl

    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:  # the system's certificates, then
            pass
        else:
            cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _version() -> str:
    from proctor import __version__

    return __version__
