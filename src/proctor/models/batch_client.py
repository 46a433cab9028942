"""The Batch API's HTTP calls: upload a file, create, look up and list batches, download files.

They share the API backend's session (its Authorization header, TLS and proxy). Messages
from the server are redacted with the backend's credentials; the key is never written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from typing import TYPE_CHECKING, Any, Callable

from proctor.errors import BackendError
from proctor.models.api_errors import auth_message, printable, server_message, short_reason
from proctor.models.api_http import LoopState, Reply

if TYPE_CHECKING:
    from proctor.models.api_credentials import Credentials

log = logging.getLogger(__name__)

# An upload or download of a 200 MB file takes longer than one answer: at least this long.
_TRANSFER_TIMEOUT_S = 600.0
# Statuses of a batch that will not change any more.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class TransientError(Exception):
    """A call that may work when asked again (connection error, 429, 5xx)."""


class NotFound(BackendError):
    """HTTP 404 for a file or batch id (a provider deletes files after a while)."""


class BatchClient:
    """Files and batches at one OpenAI-compatible endpoint."""

    def __init__(self, url: Callable[[str], str], display_base: str, credentials: Credentials,
                 timeout: float, attempts: int) -> None:
        self._url = url  # path -> the full URL (api_base's query kept)
        self._shown = display_base
        self._credentials = credentials
        self._timeout = max(timeout, _TRANSFER_TIMEOUT_S)
        self._attempts = max(1, attempts)

    async def upload(self, state: LoopState, name: str, content: bytes) -> str:
        """POST /files (purpose=batch, multipart): the new file's id."""
        boundary = f"proctor-{secrets.token_hex(12)}"
        body = b"".join([
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n".encode(),
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        data = await self._call(state, "POST", "/files", body, f"multipart/form-data; boundary={boundary}")
        return _id_of(data, "/files", self._shown)

    async def create(self, state: LoopState, input_file_id: str, endpoint: str, metadata: dict[str, str]) -> dict[str, Any]:
        """POST /batches with a 24 h completion window: the batch object."""
        body = json.dumps({"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h",
                           "metadata": metadata}).encode("utf-8")
        for attempt in range(1, self._attempts + 1):
            try:
                data = await self._call(state, "POST", "/batches", body, retry=False)
                break
            except TransientError as exc:
                if attempt >= self._attempts:
                    raise BackendError(f"POST {self._shown}/batches failed {attempt} times: {exc}") from None
                await asyncio.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
                # The batch may have been made with its answer lost: never make a second one.
                found = await self.find(state, input_file_id)
                if found is not None:
                    return found
        _id_of(data, "/batches", self._shown)
        return data

    async def retrieve(self, state: LoopState, batch_id: str) -> dict[str, Any]:
        """GET /batches/{id}: the batch object (TransientError while the server does not answer)."""
        data = await self._call(state, "GET", f"/batches/{batch_id}", retry=False)
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise TransientError(f"GET {self._shown}/batches/{batch_id} gave no status")
        return data

    async def find(self, state: LoopState, input_file_id: str, pages: int = 5) -> dict[str, Any] | None:
        """The batch made from `input_file_id`, among the most recent ones (GET /batches), or None.

        A run killed between creating a batch and recording its id finds it here instead of
        creating a second one.
        """
        after = None
        for _ in range(pages):
            query = "/batches?limit=100" + (f"&after={after}" if after else "")
            try:
                data = await self._call(state, "GET", query)
            except BackendError:  # no listing at this server: nothing to find
                return None
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list) or not items:
                return None
            for item in items:
                if isinstance(item, dict) and item.get("input_file_id") == input_file_id and safe_id(item.get("id")):
                    return item
            if not data.get("has_more"):
                return None
            after = items[-1].get("id") if isinstance(items[-1], dict) else None
            if not isinstance(after, str):
                return None
        return None

    async def content(self, state: LoopState, file_id: str) -> bytes:
        """GET /files/{id}/content: the file's bytes."""
        return await self._call(state, "GET", f"/files/{file_id}/content", raw=True)

    # ------------------------------------------------------------------ transport

    async def _call(self, state: LoopState, method: str, path: str, body: bytes | None = None,
                    content_type: str = "application/json", *, retry: bool = True, raw: bool = False) -> Any:
        """One call, asked again on transient failures (`retry`); BackendError on the others."""
        attempts = self._attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                reply = await self._exchange(state, method, path, body, content_type)
                return self._judge(reply, method, path, raw)
            except TransientError as exc:
                if attempt >= attempts:
                    if not retry:
                        raise
                    raise BackendError(f"{method} {self._shown}{_bare(path)} failed {attempts} times: {exc}") from None
                delay = min(30.0, 0.5 * 2 ** (attempt - 1))
                log.debug("%s %s: %s; again in %.1f s", method, _bare(path), exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, state: LoopState, method: str, path: str, body: bytes | None, content_type: str) -> Reply:
        import aiohttp

        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            async with asyncio.timeout(self._timeout):
                async with state.session.request(method, self._full_url(path), data=body, headers=headers,
                                                 proxy=state.proxy, allow_redirects=False) as response:
                    return Reply(response.status, response.reason or "", response.headers, await response.read())
        except TimeoutError:
            raise TransientError(f"no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"connection error: {printable(self._credentials.redact(short_reason(exc)))}") from None

    def _full_url(self, path: str) -> str:
        """The URL of `path`, its own query joined to api_base's (Azure's `api-version`)."""
        bare, _, query = path.partition("?")
        url = self._url(bare)
        return f"{url}{'&' if '?' in url else '?'}{query}" if query else url

    def _judge(self, reply: Reply, method: str, path: str, raw: bool) -> Any:
        shown = f"{self._shown}{_bare(path)}"
        status = reply.status_code
        if status in (401, 403):
            raise BackendError(auth_message(reply, shown, self._credentials))
        if status == 429 or status >= 500:
            said = server_message(reply, self._credentials)
            raise TransientError(f"HTTP {status}{': ' + said if said else ''}")
        if status >= 300:
            said = server_message(reply, self._credentials)
            message = f"{method} {shown} answered HTTP {status}{': ' + said if said else ''}"
            if status == 404 and _bare(path) not in ("/files", "/batches"):
                raise NotFound(message)
            hint = "; does this server offer the Batch API? leave out --api-batch" if status in (404, 405) else ""
            raise BackendError(f"{message}{hint}")
        if raw:
            return reply.content
        try:
            return json.loads(reply.content)
        except ValueError:
            raise TransientError(f"{method} {shown} answered with a body that is not JSON") from None


def _bare(path: str) -> str:
    return path.split("?", 1)[0]


# A file or batch id goes into a URL path: only these characters are taken from a server.
_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


def safe_id(value: Any) -> str | None:
    """A server's id when it is safe in a URL path, else None."""
    return value if isinstance(value, str) and _SAFE_ID.fullmatch(value) and value not in (".", "..") else None


def _id_of(data: Any, path: str, shown: str) -> str:
    value = safe_id(data.get("id") if isinstance(data, dict) else None)
    if value is None:
        raise BackendError(f"POST {shown}{path} answered without a usable id; is this the Batch API?")
    return value
