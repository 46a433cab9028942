"""The Batch API (issue: scale and cost, section 3): what it saves, and that it loses nothing.

N generate requests go through ApiBackend with `batch: true` against the tests' Batch API server
(tests/batch_server.py, in this process: /v1/files, /v1/batches, polling states), split at
`--max-requests` per file; the same requests then go online to the same server. Printed, each
against its target (exit 1 when one is missed):

  files      batch files submitted == ceil(N / max-requests); online POSTs during the batch run: 0
  answers    every batch answer equals the online answer (text, finish reason, token counts)
  resume     the batch run stopped while its batches are in progress, then a new backend on the
             same folder: no file uploaded and no batch created again, every answer delivered
  cost       the estimate `--dry-run` prints at $2.50 / $10 per million tokens: batch = 50% of online
  time       wall seconds of the batch path (write, upload, poll, download, parse) and of the online
             path at concurrency 256 against a server answering at once (for reference: a real
             batch takes up to 24 h)

    .venv/bin/python bench/api_batch.py [-n 20000] [--max-requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from batch_server import BatchServer  # noqa: E402

from proctor.config.schema import ApiModelConfig  # noqa: E402
from proctor.core import Message, Request, Response  # noqa: E402
from proctor.models.api import ApiBackend  # noqa: E402
from proctor.models.batch_plan import describe_batches  # noqa: E402


def _requests(n: int) -> list[Request]:
    return [Request(kind="generate", messages=(Message("user", f"Question {i}: what is {i} + {i}?\nAnswer:"),),
                    max_tokens=16, stop=("\n\n",)) for i in range(n)]


def _answer(body: dict) -> str:
    text = body["messages"][-1]["content"]
    number = int(text.split(":")[0].split()[-1])
    return f"The answer is {2 * number}."


async def _run(config: ApiModelConfig, requests: list[Request], folder: Path | None,
               stop_when: object = None) -> dict[int, Response]:
    backend = ApiBackend(config)
    answers: dict[int, Response] = {}
    await backend.start()
    if folder is not None:
        backend.attach_run(folder)
    try:
        work = asyncio.ensure_future(backend.process(requests, lambda i, r: answers.__setitem__(i, r)))
        if stop_when is not None:
            while not stop_when():  # type: ignore[operator]
                await asyncio.sleep(0.01)
            work.cancel()
        await asyncio.gather(work, return_exceptions=stop_when is not None)
    finally:
        await backend.close()
    return answers


def _same(a: Response, b: Response) -> bool:
    return (a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens, a.error) == \
           (b.text, b.finish_reason, b.prompt_tokens, b.completion_tokens, b.error)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--max-requests", type=int, default=5000)
    args = parser.parse_args()
    requests = _requests(args.n)
    missed = []
    with BatchServer(_answer, model_ids=["bench"]) as srv, tempfile.TemporaryDirectory() as tmp:
        app = srv.app
        base = dict(api_base=srv.base_url, model="bench", max_concurrency=256, batch_poll_s=0.02,
                    batch_poll_max_s=0.1, price_per_million_input=2.5, price_per_million_output=10.0)
        batch_config = ApiModelConfig(**base, batch=True, batch_max_requests=args.max_requests)
        started = time.perf_counter()
        batch = asyncio.run(_run(batch_config, requests, Path(tmp) / "a"))
        batch_s = time.perf_counter() - started
        files, online_during_batch = app.creations, app.online
        started = time.perf_counter()
        online = asyncio.run(_run(ApiModelConfig(**base), requests, None))
        online_s = time.perf_counter() - started

        want_files = math.ceil(args.n / args.max_requests)
        ok = files == want_files and online_during_batch == 0 and len(batch) == args.n
        print(f"files    {files} batch files for {args.n:,} requests (target {want_files}), "
              f"{online_during_batch} sent online (target 0): {'ok' if ok else 'MISSED'}")
        missed += [] if ok else ["files"]
        same = sum(_same(batch[i], online[i]) for i in range(args.n)) if len(batch) == len(online) == args.n else 0
        print(f"answers  {same:,} of {args.n:,} batch answers equal the online ones: {'ok' if same == args.n else 'MISSED'}")
        missed += [] if same == args.n else ["answers"]

        # Stopped while in progress (as a SIGKILL would), then picked up by a new backend.
        app.hold.clear()
        uploads, creations = app.uploads, app.creations
        folder = Path(tmp) / "b"
        asyncio.run(_run(batch_config, requests, folder, stop_when=lambda: app.polls > 0 and
                         all(b.status == "in_progress" for b in list(app.batches.values())[creations:])
                         and len(app.batches) == creations + want_files))
        app.hold.set()
        submitted = (app.uploads - uploads, app.creations - creations)
        resumed = asyncio.run(_run(batch_config, requests, folder))
        again = (app.uploads - uploads - submitted[0], app.creations - creations - submitted[1])
        ok = again == (0, 0) and len(resumed) == args.n and all(_same(resumed[i], online[i]) for i in range(args.n))
        print(f"resume   stopped in progress after {submitted[1]} batches; the next run uploaded {again[0]} files "
              f"and created {again[1]} batches (target 0, 0), {len(resumed):,} answers: {'ok' if ok else 'MISSED'}")
        missed += [] if ok else ["resume"]

    cost = describe_batches(batch_config, "bench", requests)[-1]
    online_usd = float(cost.split("at most $")[1].split(" online")[0].replace(",", ""))
    batch_usd = float(cost.split("online, $")[1].split(" as a batch")[0].replace(",", ""))
    ok = online_usd > 0 and abs(batch_usd - online_usd / 2) <= 1e-4
    print(f"cost     at $2.50 / $10 per million tokens: ${online_usd:,.4f} online, ${batch_usd:,.4f} as a batch "
          f"({100 * (1 - batch_usd / online_usd):.0f}% saved, target 50%): {'ok' if ok else 'MISSED'}")
    missed += [] if ok else ["cost"]
    print(f"time     batch path {batch_s:.2f} s ({1e4 * batch_s / args.n:.2f} s per 10k requests: write, upload, "
          f"poll, download, parse); online {online_s:.2f} s at concurrency 256 (reference)")
    if missed:
        print(f"MISSED: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
