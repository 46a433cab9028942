"""Start `proctor serve` over a local model in tests.

    with served_model(tiny_model_dir, api_key="k", max_batch_size=8) as base_url:
        ...  # base_url == "http://127.0.0.1:PORT/v1", ready for an OpenAI client

Keyword options are `proctor serve` flags with dashes as underscores
(`served_model_name="m"`, `max_seq_len=512`, `chat_template="..."`, ...); True
adds a bare flag, None leaves it out. The server runs in a background thread of
the test process on a free port (no subprocess start-up cost) and stops, after
finishing in-flight requests, when the block ends. `running_server` yields a
`RunningServer` with `.base_url` (no /v1) and `.stats` (the batcher's counters).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from proctor.serve.cli import add_arguments
from proctor.serve.health import free_port, stop_process, wait_healthy
from proctor.serve.options import ServeOptions
from proctor.serve.server import RunningServer, serve_in_thread


def serve_argv(model_dir: str | os.PathLike[str], **opts: Any) -> list[str]:
    """`proctor serve` arguments for `model_dir` and keyword options."""
    argv = [str(model_dir)]
    for key, value in opts.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def serve_options(model_dir: str | os.PathLike[str], **opts: Any) -> ServeOptions:
    """ServeOptions parsed exactly as the command line would be."""
    opts.setdefault("log_level", "warning")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return ServeOptions.from_args(parser.parse_args(serve_argv(model_dir, **opts)))


@contextlib.contextmanager
def running_server(model_dir: str | os.PathLike[str], **opts: Any) -> Iterator[RunningServer]:
    """A started in-process server on a free port of 127.0.0.1."""
    opts["port"] = 0
    opts.setdefault("host", "127.0.0.1")
    with serve_in_thread(serve_options(model_dir, **opts)) as running:
        yield running


@contextlib.contextmanager
def served_model(model_dir: str | os.PathLike[str], **opts: Any) -> Iterator[str]:
    """The OpenAI base URL (`http://127.0.0.1:PORT/v1`) of a started server."""
    with running_server(model_dir, **opts) as running:
        yield running.base_url + "/v1"


@contextlib.contextmanager
def served_model_process(
    model_dir: str | os.PathLike[str], env: dict[str, str] | None = None, **opts: Any
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`python -m proctor serve` in a subprocess: yields (base URL with /v1, process)."""
    port = free_port()
    opts.setdefault("log_level", "warning")
    argv = [sys.executable, "-m", "proctor", "serve", *serve_argv(model_dir, port=port, **opts)]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        stop_process(proc)
