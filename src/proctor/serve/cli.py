"""Arguments and entry point of `proctor serve`.

Imports stay light here (the lead's CLI imports this module to build `--help`);
fastapi, uvicorn and torch are imported inside `run()`.
"""

from __future__ import annotations

import argparse

from proctor.serve.options import API_KEY_ENV, DEFAULT_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the `proctor serve` arguments on `parser`."""
    parser.add_argument("path", help="local model directory (a Hugging Face checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--served-model-name",
        default=None,
        help="the model id clients send (default: last component of PATH)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=(
            "require `Authorization: Bearer KEY` on every /v1 request; "
            f"read from ${API_KEY_ENV} when not given (keeps it off the command line)"
        ),
    )
    parser.add_argument(
        "--backend",
        choices=("hf", "vllm", "lmdeploy"),
        default="hf",
        help="hf: built-in transformers server; vllm/lmdeploy: start their own OpenAI server",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="most concurrent requests run as one batch; 1 = one at a time (default: %(default)s)",
    )
    parser.add_argument(
        "--chat-template",
        default=None,
        help="a Jinja chat template (a file, or the template text) overriding the tokenizer's",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "float16", "bfloat16"),
        default="auto",
        help="weight dtype (default: %(default)s)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help="context length: longer prompts are refused (default: the model's own limit)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the checkpoint's own Python code (only for checkpoints you trust)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long to wait for more requests to join a batch (default: %(default)s ms)",
    )
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="server log level (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code. User mistakes raise ProctorError."""
    from proctor.serve.options import ServeOptions

    options = ServeOptions.from_args(args)
    if options.backend != "hf":
        from proctor.serve.external import run_external

        return run_external(options)
    from proctor.serve.server import serve_forever

    return serve_forever(options)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m proctor.serve`), same as `proctor serve`."""
    import sys

    from proctor.errors import ProctorError

    parser = argparse.ArgumentParser(prog="proctor serve", description="OpenAI-compatible server")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ProctorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
