"""The 164 HumanEval canonical solutions through the code sandbox: in parallel, then one by one.

    python bench/humaneval_sandbox.py [--workers N] [--data PATH]

Prints the isolation mode, both wall times and the speedup; exits non-zero if any canonical
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

from proctor.sandbox import Limits, available_cores, isolation, run_many
from proctor.scoring.code_extract import build_program, extract_code

DATA = Path("/work/shared/datasets/humaneval/data/HumanEval.jsonl.gz")


def programs(path: Path) -> tuple[list[str], list[str], list[str]]:
    ids, progs, sentinels = [], [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            found = extract_code(p["canonical_solution"], p["prompt"], p["entry_point"])
            code = found.code if found else p["canonical_solution"]
            sentinel = f"proctor-tests-ran-{secrets.token_hex(8)}"
            ids.append(p["task_id"])
            progs.append(build_program(p["prompt"], code, p["test"], p["entry_point"], sentinel))
            sentinels.append(sentinel)
    return ids, progs, sentinels


def failures(ids: list[str], results: list, sentinels: list[str]) -> list[str]:
    return [
        f"{i}: rc={r.returncode} timeout={r.timed_out} {r.stderr.strip()[-200:]}"
        for i, r, s in zip(ids, results, sentinels)
        if not (r.returncode == 0 and s in r.stdout.splitlines())
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=available_cores())
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    ids, progs, sentinels = programs(args.data)
    iso = isolation()
    print(f"isolation: {json.dumps(iso.as_manifest())}")
    limits = Limits(timeout_s=30.0)  # generous: a loaded machine must not turn into a failure

    t0 = time.perf_counter()
    par = run_many(progs, limits, workers=args.workers, iso=iso)
    t_par = time.perf_counter() - t0
    t0 = time.perf_counter()
    seq = run_many(progs, limits, workers=1, iso=iso)
    t_seq = time.perf_counter() - t0

    bad = failures(ids, par, sentinels) + failures(ids, seq, sentinels)
    n = len(progs)
    print(f"programs: {n}  workers: {args.workers}")
    print(f"parallel:   {t_par:6.2f} s  ({n - len(failures(ids, par, sentinels))}/{n} passed, {t_par / n * 1000:.0f} ms/program)")
    print(f"sequential: {t_seq:6.2f} s  ({n - len(failures(ids, seq, sentinels))}/{n} passed, {t_seq / n * 1000:.0f} ms/program)")
    print(f"speedup:    {t_seq / t_par:.2f}x")
    for line in bad:
        print("FAILED", line, file=sys.stderr)
    if bad:
        return 1
    if t_par >= t_seq:
        print("the parallel run was not faster than the sequential one", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
