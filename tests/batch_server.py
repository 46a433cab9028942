"""A test server with OpenAI's Batch API beside the online endpoints of OpenAIApp.

POST /v1/files (multipart, purpose=batch), POST /v1/batches, GET /v1/batches (the listing),
GET /v1/batches/{id}, GET /v1/files/{id}/content. A batch is `validating` for
`validating_polls` status checks, then `in_progress` for `in_progress_polls` more (and for as
long as `hold` is clear), then ends: each line is answered by OpenAIApp's own handler (so the
answers are exactly the online ones), into the output file (any HTTP status) or, for lines
`line_error` picks, the error file with a per-line error. `expire` picks lines an expired
batch leaves unanswered (status `expired`, those lines in the error file as
`batch_expired`); `fail_first` batches fail validation (`failed`, `errors.data`, no files).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from openai_server import OpenAIApp, OpenAIServer

Pick = Callable[[dict[str, Any]], bool]  # a batch line's body -> whether it is picked


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, Any]
    polls: int = 0
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint, "input_file_id": self.input_file_id,
                "completion_window": "24h", "status": self.status, "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id, "errors": self.errors, "created_at": self.created_at,
                "metadata": self.metadata}


class BatchApp(OpenAIApp):
    """OpenAIApp plus the Batch API (see the module docstring); counters for the tests."""

    def __init__(self, *, validating_polls: int = 1, in_progress_polls: int = 2, expire: Pick | None = None,
                 line_error: Pick | None = None, fail_first: int = 0, create_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validating_polls = validating_polls
        self.in_progress_polls = in_progress_polls
        self.expire = expire
        self.line_error = line_error
        self.fail_first = fail_first
        self.create_delay = create_delay  # seconds POST /batches waits after making the batch
        self.lose_creations = 0  # > 0: that many POST /batches make the batch but answer 502
        self.hold = threading.Event()  # clear: every batch stays in_progress
        self.hold.set()
        self.files: dict[str, bytes] = {}
        self.inputs: set[str] = set()  # the ids of uploaded files
        self.results_gone = False  # True: output and error files answer 404 (deleted by the provider)
        self.batches: dict[str, _Batch] = {}
        self.uploads = 0
        self.creations = 0
        self.polls = 0
        self.online = 0  # POSTs to the online endpoints

    async def _handle(self, method: str, path: str, headers: dict[str, str], body: Any, record: Any) -> Any:
        route = path.rstrip("/")
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return await super()._handle(method, path, headers, body, record)  # its 401
        if method == "POST" and route == "/v1/files":
            return self._upload(headers, body)
        if method == "POST" and route == "/v1/batches":
            return await self._create(body)
        if method == "GET" and route == "/v1/batches":
            with self._lock:
                data = [b.public() for b in reversed(list(self.batches.values()))]
            return 200, {"object": "list", "data": data, "has_more": False}, {}
        match = re.fullmatch(r"/v1/batches/([\w.-]+)", route)
        if method == "GET" and match:
            return await self._poll(match.group(1))
        match = re.fullmatch(r"/v1/files/([\w.-]+)/content", route)
        if method == "GET" and match:
            content = self.files.get(match.group(1))
            if content is None or self.results_gone and match.group(1) not in self.inputs:
                return 404, {"error": {"message": "no such file"}}, {}
            return 200, content, {}
        if method == "POST":
            with self._lock:
                self.online += 1
        return await super()._handle(method, path, headers, body, record)

    def _upload(self, headers: dict[str, str], body: Any) -> Any:
        boundary = headers.get("content-type", "").partition("boundary=")[2]
        raw = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8")
        parts = {}
        for part in raw.split(f"--{boundary}".encode()):
            head, _, content = part.partition(b"\r\n\r\n")
            name = re.search(rb'name="([^"]+)"', head)
            if name:
                parts[name.group(1).decode()] = content.removesuffix(b"\r\n")
        if parts.get("purpose") != b"batch" or "file" not in parts:
            return 400, {"error": {"message": "purpose=batch and a file are required"}}, {}
        with self._lock:
            self.uploads += 1
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = parts["file"]
            self.inputs.add(file_id)
        return 200, {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(parts["file"])}, {}

    async def _create(self, body: Any) -> Any:
        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": "unknown input_file_id"}}, {}
        if body.get("completion_window") != "24h":
            return 400, {"error": {"message": "completion_window must be 24h"}}, {}
        with self._lock:
            self.creations += 1
            batch = _Batch(f"batch_{len(self.batches) + 1}", body["input_file_id"], body.get("endpoint", ""),
                           body.get("metadata") or {})
            self.batches[batch.id] = batch
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        if self.lose_creations > 0:  # made, but the answer is lost (a 502 from a proxy, say)
            self.lose_creations -= 1
            return 502, {"error": {"message": "Bad gateway"}}, {}
        return 200, batch.public(), {}

    async def _poll(self, batch_id: str) -> Any:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": f"no batch {batch_id}"}}, {}
        with self._lock:
            self.polls += 1
            batch.polls += 1
            polls = batch.polls
        if batch.status in ("validating", "in_progress"):
            if polls <= self.validating_polls:
                batch.status = "validating"
            elif polls <= self.validating_polls + self.in_progress_polls or not self.hold.is_set():
                batch.status = "in_progress"
            else:
                await self._finish(batch)
        return 200, batch.public(), {}

    async def _finish(self, batch: _Batch) -> None:
        with self._lock:
            failing = self.fail_first > 0
            self.fail_first -= failing
        if failing:
            batch.status = "failed"
            batch.errors = {"object": "list", "data": [{"code": "token_limit_exceeded", "line": None,
                                                        "message": "Enqueued token limit reached"}]}
            return
        output, errors = [], []
        expired = False
        for n, raw in enumerate(self.files[batch.input_file_id].splitlines()):
            line = json.loads(raw)
            request_id = f"req_{batch.id}_{n}"
            if line.get("url") != batch.endpoint:
                errors.append({"id": request_id, "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "invalid_url", "message": "the url differs from the batch's"}})
            elif self.expire is not None and self.expire(line["body"]):
                expired = True
                errors.append({"id": request_id, "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed "
                                         "before the completion window expired."}})
            elif self.line_error is not None and self.line_error(line["body"]):
                errors.append({"id": request_id, "custom_id": line["custom_id"],
                               "response": {"status_code": 500, "request_id": request_id,
                                            "body": {"error": {"message": "The server had an error",
                                                               "type": "server_error"}}},
                               "error": None})
            else:
                auth = {"authorization": f"Bearer {self.api_key}"} if self.api_key is not None else {}
                status, payload, _ = await OpenAIApp._handle(self, "POST", line["url"], auth, line["body"], _NoRecord())
                output.append({"id": request_id, "custom_id": line["custom_id"],
                               "response": {"status_code": status, "request_id": request_id, "body": payload},
                               "error": None})
        with self._lock:
            for kind, lines in (("output", output), ("error", errors)):
                if lines:
                    file_id = f"file-{len(self.files) + 1}"
                    self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode("utf-8")
                    setattr(batch, f"{kind}_file_id", file_id)
        batch.status = "expired" if expired else "completed"


class _NoRecord:
    """A stand-in for the RecordedRequest OpenAIApp notes an injected failure in."""

    injected: str | None = None


class BatchServer(OpenAIServer):
    """OpenAIServer running a BatchApp."""

    def __init__(self, responder: Any = None, **options: Any) -> None:
        batch_keys = ("validating_polls", "in_progress_polls", "expire", "line_error", "fail_first", "create_delay")
        batch_options = {k: options.pop(k) for k in batch_keys if k in options}
        super().__init__(responder, **options)
        self.app = BatchApp(responder=responder, **batch_options, **options)
