"""The benchmark's fake OpenAI server: its own process, fixed latency, always the same answer.

    python bench/fake_openai_server.py --latency 0.2 --answer A
    # prints "PORT <n>" once listening; stops on SIGTERM / SIGINT / end of stdin

The server logic lives in tests/openai_server.py (one implementation for tests
and benchmarks); GET /_stats gives the server-side counters, POST /_reset clears them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openai_server import OpenAIServer  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--answer", default="A", help="the completion text of every request")
    parser.add_argument("--model", default="bench-model", help="the model id listed by /v1/models")
    parser.add_argument("--port", type=int, default=0, help="0: a random free port")
    parser.add_argument("--capacity", type=int, default=None,
                        help="answer 429 to requests arriving while this many are served")
    parser.add_argument(
        "--stdin-eof", action="store_true", help="also stop when stdin closes (parent died)"
    )
    args = parser.parse_args(argv)

    answer = args.answer
    server = OpenAIServer(
        lambda body: answer,
        port=args.port,
        latency=args.latency,
        model_ids=[args.model],
        record_bodies=False,  # thousands of prompts per run: keep only timings
    )
    if args.capacity is not None:
        from capacity_server import CapacityApp

        server.app = CapacityApp(args.capacity, responder=lambda body: answer, latency=args.latency,
                                 model_ids=[args.model], record_bodies=False)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.stdin_eof:

        def watch_stdin() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
