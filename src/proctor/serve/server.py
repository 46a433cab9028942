"""Lifecycle of the built-in server: load the model, serve with uvicorn, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from proctor.errors import ConfigError
from proctor.models.base import Backend
from proctor.serve.options import DEFAULT_MAX_TOKENS, ServeOptions, check_model_path


def _uvicorn_server_class() -> type:
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's server, but Ctrl-C / SIGTERM end `serve()` normally.

        uvicorn re-raises the caught signal after its shutdown, which would kill the
        process before the model is closed; here the signal only asks for shutdown.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            loop = asyncio.get_running_loop()
            installed = []
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self.handle_exit, sig, None)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # Windows: keep the defaults
                    pass
            try:
                yield
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)

    return _Server


class ModelServer:
    """One `proctor serve --backend hf` server: model, batcher, app and uvicorn."""

    def __init__(self, options: ServeOptions, backend: Backend | None = None) -> None:
        self.options = options
        self._backend = backend  # tests may pass a backend; None: HFBackend over options
        self._uvicorn: Any = None
        self.app: Any = None
        self.error: BaseException | None = None

    @property
    def started(self) -> bool:
        return bool(self._uvicorn is not None and self._uvicorn.started)

    def request_stop(self) -> None:
        """Ask the server to finish in-flight requests and stop (thread-safe)."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def _build_backend(self, max_seq_len: int) -> Backend:
        from proctor.config.schema import HFModelConfig
        from proctor.models.hf import HFBackend

        config = HFModelConfig(
            path=self.options.model_path,
            abbr=self.options.model_name,
            dtype=self.options.dtype,
            device=self.options.device,
            # The batcher hands the backend at most this many requests at once;
            # the backend must run them as one batch, not split them again.
            batch_size=self.options.max_batch_size,
            max_seq_len=max_seq_len,
            trust_remote_code=self.options.trust_remote_code,
        )
        return HFBackend(config)

    async def serve(self, sockets: list[socket.socket] | None = None, announce: bool = False) -> None:
        """Load the model, then serve until `request_stop()` or a signal.

        `sockets`: already bound listening sockets (else uvicorn binds host:port)."""
        import uvicorn

        from proctor.serve.app import AppSettings, create_app
        from proctor.serve.prompter import Prompter, load_chat_template, model_context_length

        options = self.options
        check_model_path(options.model_path)
        # User mistakes in the template show up before the (slow) model load.
        template = load_chat_template(options.chat_template) if options.chat_template else None
        max_seq_len = options.max_seq_len or model_context_length(options.model_path)
        backend = self._backend or self._build_backend(max_seq_len)
        await backend.start()
        try:
            prompter = Prompter.load(
                options.model_path,
                max_seq_len=max_seq_len,
                chat_template=template,
                trust_remote_code=options.trust_remote_code,
            )
            settings = AppSettings(
                model_name=options.model_name,
                api_key=options.api_key,
                max_batch_size=options.max_batch_size,
                batch_wait_s=options.batch_wait_s,
                default_max_tokens=DEFAULT_MAX_TOKENS,
                model_root=checkpoint_root(options.model_path),
                model_created=checkpoint_mtime(options.model_path),
                fingerprint=serve_fingerprint(backend.identity, template, prompter.max_seq_len),
            )
            self.app = create_app(backend, settings, prompter)
            config = uvicorn.Config(
                self.app,
                host=options.host,
                port=options.port,
                log_level=options.log_level,
                timeout_graceful_shutdown=10,
            )
            self._uvicorn = _uvicorn_server_class()(config)
            if announce:
                print(
                    f"proctor serve: '{options.model_name}' from {options.model_path} on "
                    f"http://{options.host}:{options.port}/v1 (max batch size {options.max_batch_size}, "
                    f"context {prompter.max_seq_len} tokens, API key "
                    f"{'required' if options.api_key else 'not required'})",
                    file=sys.stderr,
                    flush=True,
                )
            await self._uvicorn.serve(sockets=sockets)
        finally:
            await backend.close()


def serve_fingerprint(backend_identity: str, chat_template: str | None, max_seq_len: int) -> str:
    """`fp_<hash>` of the backend's full identity and what this server adds to it (a chat
    template override, the context it cuts generation at, the default max_tokens)."""
    blob = json.dumps({"backend": backend_identity, "chat_template": chat_template,
                       "max_seq_len": max_seq_len, "default_max_tokens": DEFAULT_MAX_TOKENS}, sort_keys=True)
    return "fp_" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def checkpoint_root(model_path: str) -> str:
    """The checkpoint as /v1/models names it (`root`): its absolute directory, or the hub id."""
    path = Path(model_path).expanduser()
    return str(path.resolve()) if path.is_dir() else model_path


def checkpoint_mtime(model_path: str) -> int | None:
    """When the checkpoint's files last changed (whole seconds), for /v1/models `created`:
    clients that key caches on it see a replaced checkpoint as another model."""
    path = Path(model_path).expanduser()
    if not path.is_dir():
        return None
    times = [f.stat().st_mtime for f in path.iterdir() if f.is_file()]
    return int(max(times)) if times else None


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), or a one-line ConfigError.

    Binding before the model loads makes a busy port fail in a second, not after
    minutes of loading weights."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise ConfigError(f"--host {host}: not an address this machine can listen on ({exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another server using it? "
            "Choose another --port"
        ) from None
    return sock


def serve_forever(options: ServeOptions) -> int:
    """Run the built-in server in the foreground (the `proctor serve` command)."""
    sock = bind_socket(options.host, options.port)
    server = ModelServer(options)
    try:
        asyncio.run(server.serve(sockets=[sock], announce=True))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except SystemExit as exc:  # uvicorn exits when it cannot start; it has logged why
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sock.close()
    return 0


@dataclass(frozen=True)
class RunningServer:
    """A server started by `serve_in_thread`."""

    base_url: str  # http://127.0.0.1:PORT (append /v1 for OpenAI clients)
    server: ModelServer

    @property
    def stats(self) -> dict[str, int]:
        """The batcher's counters (batches, requests, largest_batch, skipped)."""
        return self.server.app.state.serve.batcher.stats.to_json()


@contextlib.contextmanager
def serve_in_thread(
    options: ServeOptions, backend: Backend | None = None, timeout_s: float = 120.0
) -> Iterator[RunningServer]:
    """Serve in a background thread of this process (tests, benchmarks); port 0 = a free port."""
    sock = bind_socket(options.host, options.port)
    port = sock.getsockname()[1]
    server = ModelServer(options, backend)

    def target() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the waiting caller below
            server.error = exc

    thread = threading.Thread(target=target, name="proctor-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if server.error is not None:
                raise server.error
            if not thread.is_alive():
                raise RuntimeError("proctor serve stopped before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"proctor serve did not start within {timeout_s:.0f}s")
            time.sleep(0.02)
        yield RunningServer(f"http://{options.host}:{port}", server)
    finally:
        server.request_stop()
        thread.join(timeout=30)
        sock.close()
