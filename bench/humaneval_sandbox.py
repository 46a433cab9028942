"""The 164 HumanEval canonical solutions through the code sandbox: in parallel, then one by one.

    python bench/humaneval_sandbox.py [--workers N] [--data PATH] [--single]

Each item is scored as `code_exec` scores it: the candidate (prompt + solution) and the tester
(the tests, calling the candidate through a pipe) in two sandboxes (proctor.sandbox.split).
`--single` also times the old one-program form (prompt + solution + tests in one sandbox, the
verdict a printed sentinel that the program could forge) for comparison.

Prints the isolation mode, the wall times and the speedup; exits non-zero if any canonical
solution fails or the parallel run is not faster than the sequential one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import secrets
import sys
import time
from pathlib import Path

from proctor.core import Record, Sample
from proctor.sandbox import Limits, available_cores, isolation, run_many
from proctor.scoring.code_exec import CodeExecScorer
from proctor.scoring.code_extract import build_program, extract_code

DATA = Path("/work/shared/datasets/humaneval/data/HumanEval.jsonl.gz")


def problems(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def pairs(rows: list[dict]) -> list[tuple[Sample, Record]]:
    return [
        (Sample(id=p["task_id"], question=p["prompt"], target=p["test"], fields={"entry_point": p["entry_point"]}),
         Record(item_id=p["task_id"], prompt=p["prompt"], output=p["canonical_solution"], loglikelihoods=None))
        for p in rows
    ]


def single_programs(rows: list[dict]) -> tuple[list[str], list[str]]:
    progs, sentinels = [], []
    for p in rows:
        found = extract_code(p["canonical_solution"], p["prompt"], p["entry_point"])
        sentinel = f"proctor-tests-ran-{secrets.token_hex(8)}"
        progs.append(build_program(p["prompt"], found.code if found else p["canonical_solution"], p["test"],
                                   p["entry_point"], sentinel))
        sentinels.append(sentinel)
    return progs, sentinels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=available_cores())
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--single", action="store_true", help="also time the one-program form")
    args = ap.parse_args()
    rows = problems(args.data)
    items = pairs(rows)
    iso = isolation()
    print(f"isolation: {json.dumps(iso.as_manifest())}")
    scorer = CodeExecScorer(timeout_s=30.0)  # generous: a loaded machine must not turn into a failure
    n = len(items)
    bad: list[str] = []
    times = {}
    for label, workers in (("parallel", args.workers), ("sequential", 1)):
        t0 = time.perf_counter()
        scores = scorer.score_many(items, workers=workers)
        times[label] = time.perf_counter() - t0
        failed = [f"{s.id}: {sc.rule} {sc.explanation[-200:]}" for (s, _), sc in zip(items, scores) if sc.rule != "passed"]
        bad += failed
        print(f"split {label:10s} {times[label]:6.2f} s  ({n - len(failed)}/{n} passed, "
              f"{times[label] / n * 1000:.0f} ms/item, {workers} workers)")
    print(f"speedup:    {times['sequential'] / times['parallel']:.2f}x")
    if args.single:
        progs, sentinels = single_programs(rows)
        for label, workers in (("parallel", args.workers), ("sequential", 1)):
            t0 = time.perf_counter()
            results = run_many(progs, Limits(timeout_s=30.0), workers=workers, iso=iso)
            t = time.perf_counter() - t0
            ok = sum(r.returncode == 0 and s in r.stdout.splitlines() for r, s in zip(results, sentinels))
            print(f"single {label:9s} {t:6.2f} s  ({ok}/{n} passed, {t / n * 1000:.0f} ms/item)")
    for line in bad:
        print("FAILED", line, file=sys.stderr)
    if bad:
        return 1
    if times["parallel"] >= times["sequential"]:
        print("the parallel run was not faster than the sequential one", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
