r"""math_equiv scoring benchmark: the 500 MATH-500 problems, answered in a mix of styles, on 2 cores.

Each problem gets one synthetic model output, chosen by its index: the gold boxed as written,
the gold after "The final answer is $...$.", an equivalent form (`\dfrac`, a decimal for a
fraction, `x = ...`), a wrong-but-close answer (the number off by one, a sign flipped), or
no answer at all; one output is pathological (`\boxed{9^{9^{9^{9}}}}`, which Math-Verify
cannot finish). Rows:

  proctor   the scoring stage (`score_records`, a pool of 2 workers, each with its verifier
            subprocess): wall time, items/s, the share that hit the timeout
  naive     sequential Math-Verify in the main thread, its own `signal.alarm` timeouts
            (parse the whole output, gold first), as a script would do it

Targets (exit 1 if one is missed): every expected verdict is met by proctor; the pathological
item alone, on a warm scorer, takes at most timeout + kill_grace + 0.5 s; proctor is faster
than the naive loop.

    .venv/bin/python bench/math_scoring.py [--timeout 5] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from proctor.core import Record, Sample  # noqa: E402
from proctor.scoring import get_scorer  # noqa: E402
from proctor.scoring.math_equiv import shutdown_verifiers  # noqa: E402
from proctor.scoring.stage import score_records  # noqa: E402

DATA = Path(os.environ.get("PROCTOR_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
MATH500 = DATA / "math500" / "prm800k" / "math_splits" / "test.jsonl"
PATHOLOGICAL = "After a very long computation the value is $\\boxed{9^{9^{9^{9}}}}$."
_INTEGER = re.compile(r"-?\d+")
_PLAIN_FRAC = re.compile(r"\\frac")
_FRACTION = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def make_output(i: int, gold: str) -> tuple[str, float]:
    """A synthetic output for problem i and whether it is right (1.0) or wrong (0.0)."""
    style = i % 6
    if style == 0:
        return f"Let us work it out step by step... so we get $\\boxed{{{gold}}}$.", 1.0
    if style == 1:
        return f"Some reasoning.\nThe final answer is ${gold}$. I hope it is correct.", 1.0
    if style == 2:
        fraction = _FRACTION.fullmatch(gold)
        if fraction and int(fraction.group(2)) in (2, 4, 5, 8, 10):
            return f"So the value is $\\boxed{{{int(fraction.group(1)) / int(fraction.group(2))}}}$", 1.0
        if _INTEGER.fullmatch(gold):
            return f"Therefore $x = \\boxed{{x = {gold}}}$.", 1.0
        return "\\[\\boxed{" + _PLAIN_FRAC.sub(r"\\dfrac", gold) + "}\\]", 1.0
    if style in (3, 4):
        if _INTEGER.fullmatch(gold):
            return f"Checking again, I get \\boxed{{{int(gold) + 1}}}.", 0.0
        if gold.startswith("-"):
            return f"So the result is $\\boxed{{{gold[1:]}}}$.", 0.0
        return f"So the result is $\\boxed{{-{gold}}}$." if style == 3 else f"Hence $\\boxed{{2{gold}}}$.", 0.0
    return "I could not solve this one.", 0.0


def naive(pairs: list[tuple[str, str]], timeout: int) -> tuple[float, list[float]]:
    from math_verify import parse, verify

    started = time.perf_counter()
    values = []
    for gold, output in pairs:
        golds = parse(f"${gold}$", parsing_timeout=timeout)
        values.append(1.0 if verify(golds, parse(output, parsing_timeout=timeout), timeout_seconds=timeout) else 0.0)
    return time.perf_counter() - started, values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--kill-grace", type=float, default=1.0)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        os.sched_setaffinity(0, cpus)  # the pool workers and verifiers inherit it
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # the naive loop's timeout warnings

    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    outputs = [make_output(i, row["answer"]) for i, row in enumerate(rows)]
    slow_index = 250
    outputs[slow_index] = (PATHOLOGICAL, 0.0)
    pairs = [
        (Sample(row["unique_id"], row["problem"], row["answer"]), Record(row["unique_id"], "p", out, None))
        for row, (out, _) in zip(rows, outputs)
    ]
    expected = [want for _, want in outputs]
    print(f"{len(pairs)} MATH-500 items, {sum(expected):.0f} right by construction; "
          f"{args.cores} cores; timeout {args.timeout:g} s + kill grace {args.kill_grace:g} s")

    scorer = get_scorer("math_equiv", {"timeout": args.timeout, "kill_grace": args.kill_grace})
    started = time.perf_counter()
    scores = score_records(scorer, pairs, workers=args.cores)
    wall = time.perf_counter() - started
    timeouts = sum(s.rule == "timeout" for s in scores)
    mismatches = [(pairs[i][0].target, outputs[i][0], s) for i, s in enumerate(scores) if s.value != expected[i]]
    rules: dict[str, int] = {}
    for s in scores:
        rules[str(s.rule)] = rules.get(str(s.rule), 0) + 1
    print(f"proctor  wall {wall:6.2f} s  {len(pairs) / wall:6.1f} items/s  timeouts {timeouts}/{len(pairs)} "
          f"({timeouts / len(pairs):.1%})  accuracy {sum(s.value for s in scores) / len(scores):.3f}  "
          f"verdicts off {len(mismatches)}  rules {rules}")
    for target, output, s in mismatches[:10]:
        print(f"  off: gold {target!r} output {output!r} -> {s}")

    # The pathological item alone, on a warm scorer in this process.
    scorer.score(*pairs[0])
    started = time.perf_counter()
    slow = scorer.score(*pairs[slow_index])
    slow_s = time.perf_counter() - started
    started = time.perf_counter()
    after = scorer.score(*pairs[1])
    after_s = time.perf_counter() - started
    print(f"pathological item alone {slow_s:.2f} s (rule {slow.rule}); the next item {after_s:.3f} s")
    shutdown_verifiers()

    naive_wall, naive_values = naive([(row["answer"], out) for row, (out, _) in zip(rows, outputs)], int(args.timeout))
    naive_off = sum(v != e for v, e in zip(naive_values, expected))
    for i in [i for i, (v, e) in enumerate(zip(naive_values, expected)) if v != e][:5]:
        print(f"  naive off: gold {rows[i]['answer']!r} output {outputs[i][0]!r} -> {naive_values[i]}")
    print(f"naive    wall {naive_wall:6.2f} s  {len(pairs) / naive_wall:6.1f} items/s  (1 core, main thread)  "
          f"accuracy {sum(naive_values) / len(naive_values):.3f}  verdicts off {naive_off}")
    print(f"speed-up {naive_wall / wall:.2f}x")

    limit = args.timeout + args.kill_grace + 0.5
    targets = [
        (f"every expected verdict met (off: {len(mismatches)})", not mismatches),
        (f"pathological item <= {limit:g} s ({slow_s:.2f} s)", slow_s <= limit),
        (f"item after it < 1 s ({after_s:.2f} s)", after_s < 1.0),
        (f"proctor faster than naive ({wall:.2f} s vs {naive_wall:.2f} s)", wall < naive_wall),
    ]
    missed = [name for name, ok in targets if not ok]
    for name, ok in targets:
        print(f"  [{'ok' if ok else 'MISSED'}] {name}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
