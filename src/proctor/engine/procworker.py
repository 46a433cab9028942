"""A model replica in its own process, pinned to its GPUs with CUDA_VISIBLE_DEVICES.

The parent runs `python -m proctor.engine.procworker` and talks to it over the child's
stdin/stdout in length-prefixed pickle frames (the child moves its own stdout to stderr
first, so a library that prints cannot break the stream). The model is loaded once per
worker and answers every task of that model sent to it.

parent -> child: ("start", config) | ("process", call_id, requests) | ("close",)
child -> parent: ("started", name, identity, chat, devices) | ("response", call_id, index, response)
                 | ("done", call_id) | ("failed", call_id or None, message) | ("closed",)
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
import sys
import threading
from typing import IO, Any, Sequence

from proctor.core import Request
from proctor.engine.replicas import ReplicaInfo
from proctor.errors import BackendError, ProctorError
from proctor.models.base import OnResponse

log = logging.getLogger("proctor.engine")

_HEADER = struct.Struct(">Q")
CLOSE_TIMEOUT_S = 30.0


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


# ----------------------------------------------------------------------------- parent side


class ProcessReplica:
    """The parent's handle on one worker process."""

    def __init__(self, config: Any, label: str) -> None:
        self._config = config
        self._label = label
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started: asyncio.Future[ReplicaInfo] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._calls: dict[int, tuple[OnResponse, asyncio.Future[None]]] = {}
        self._next_call = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, devices: Sequence[str] | None) -> ReplicaInfo:
        env = dict(os.environ)
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        self._closed = loop.create_future()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proctor.engine.procworker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=1 << 20,
        )
        self._reader = asyncio.ensure_future(self._read())
        self._send(("start", self._config))
        return await self._started

    def _send(self, message: Any) -> None:
        if self._proc is None or self._proc.stdin is None or self._proc.stdin.is_closing():
            raise BackendError(f"the worker process of {self._label} is not running")
        self._proc.stdin.write(_frame(message))

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        call_id = self._next_call
        self._next_call += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = (on_response, done)
        try:
            self._send(("process", call_id, list(requests)))
            assert self._proc is not None and self._proc.stdin is not None
            await self._proc.stdin.drain()
            await done
        finally:
            self._calls.pop(call_id, None)

    async def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        try:
            while True:
                header = await stdout.readexactly(_HEADER.size)
                (size,) = _HEADER.unpack(header)
                self._dispatch(pickle.loads(await stdout.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        code = await proc.wait()
        error = BackendError(
            f"the worker process of {self._label} exited unexpectedly (exit code {code}); "
            "its error is above; finished samples are saved, continue with -r latest"
        )
        self._fail_all(error)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "response":
            _, call_id, index, response = message
            call = self._calls.get(call_id)
            if call is not None and not call[1].done():
                try:
                    call[0](index, response)
                except BaseException as exc:  # writing the record failed (disk full): that task fails
                    call[1].set_exception(exc)
        elif kind == "done":
            call = self._calls.get(message[1])
            if call is not None and not call[1].done():
                call[1].set_result(None)
        elif kind == "failed":
            _, call_id, text = message
            error = BackendError(text)
            if call_id is None:
                if self._started is not None and not self._started.done():
                    self._started.set_exception(error)
            elif call_id in self._calls and not self._calls[call_id][1].done():
                self._calls[call_id][1].set_exception(error)
        elif kind == "started":
            _, name, identity, chat, devices = message
            if self._started is not None and not self._started.done():
                self._started.set_result(ReplicaInfo(name, identity, chat, devices))
        elif kind == "closed":
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)

    def _fail_all(self, error: BaseException) -> None:
        for future in (self._started, *(f for _, f in self._calls.values())):
            if future is not None and not future.done():
                future.set_exception(error)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.returncode is None and proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.write(_frame(("close",)))
                await proc.stdin.drain()
                proc.stdin.close()
            await asyncio.wait_for(proc.wait(), CLOSE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            log.warning("the worker process of %s did not stop in %g s; killing it", self._label, CLOSE_TIMEOUT_S)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        finally:
            if self._reader is not None:
                await asyncio.gather(self._reader, return_exceptions=True)


# ------------------------------------------------------------------------------ child side


class _Child:
    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()  # backends may answer from their own threads
        self._backend: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, message: Any) -> None:
        data = _frame(message)
        with self._lock:
            self._out.write(data)
            self._out.flush()

    async def serve(self, stdin: IO[bytes]) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def read() -> None:
            try:
                while True:
                    header = stdin.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        break
                    (size,) = _HEADER.unpack(header)
                    loop.call_soon_threadsafe(inbox.put_nowait, pickle.loads(stdin.read(size)))
            finally:
                try:
                    loop.call_soon_threadsafe(inbox.put_nowait, ("close",))  # the parent is gone: stop
                except RuntimeError:
                    pass  # the loop already ended after a regular close

        threading.Thread(target=read, name="procworker-stdin", daemon=True).start()
        while True:
            message = await inbox.get()
            if message[0] == "start":
                await self._start(message[1])
            elif message[0] == "process":
                task = asyncio.ensure_future(self._process(message[1], message[2]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif message[0] == "close":
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                if self._backend is not None:
                    await self._backend.close()
                self.send(("closed",))
                return

    async def _start(self, config: Any) -> None:
        from proctor.models import create_backend

        try:
            self._backend = create_backend(config)
            await self._backend.start()
        except Exception as exc:
            self.send(("failed", None, _describe(exc)))
            return
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.send(("started", self._backend.name, self._backend.identity, self._backend.chat, devices))

    async def _process(self, call_id: int, requests: list[Request]) -> None:
        try:
            await self._backend.process(requests, lambda i, r: self.send(("response", call_id, i, r)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.send(("failed", call_id, _describe(exc)))
            return
        self.send(("done", call_id))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProctorError):
        return str(exc)
    log.exception("model worker failed")
    return f"model worker failed: {type(exc).__name__}: {exc}"


def main() -> None:
    # Frames go to the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    asyncio.run(_Child(out).serve(sys.stdin.buffer))
    # The backend is closed and the parent told: skip the interpreter's slow teardown of torch
    # (seconds), so the GPUs go back to the pool at once. This process writes no files.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
