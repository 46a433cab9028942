"""Many small subjects vs one large subject, same questions, same local HF model, same run.

The issue ("Local scoring speed", part 2): `mmlu_ppl --limit 5` (57 subjects x 5 questions)
took much longer than one subject with the same 285 questions, because every subject was
its own task with its own small batches. A local model now serves all tasks from one queue,
batched across subjects and sorted by length; this benchmark checks that 57 small subjects
cost what one large one costs.

Data: two data folders built in a temporary directory from the real MMLU files in
shared/datasets, with the MMLU layout (`mmlu/data/{split}/{subject}_{split}.csv`):
  many  every subject's test file cut to its first --per-subject rows (what `--limit N` picks)
  one   one subject (`miscellaneous`) whose test file holds exactly those 57 x N rows
Both runs use `--limit N` / `--limit 57N` with `--fewshot 0` (default), so the two sides send the
same questions with prompts that differ only in the subject title of the instruction line
(the token totals are printed). Model: the benchmark model of bench/hf_multiple_choice.py
(a random Llama, hidden 512, 8 layers, float32, tokenizer trained on the dev splits), CPU.

Workloads: ppl (`mmlu_ppl`: log-likelihood of " A".." D") and gen (`mmlu_gen`, greedy,
--max-out-len new tokens). Each run is `python -m proctor run ... --mode infer --no-cache`
in a fresh process, timed from start to exit; `fixed` is the same command on one question
(import, model load, planning: paid once by both sides) and `net` ratios subtract it.
Rounds alternate many/one; the best round of each counts (the machine may be shared).
Target: net many / one <= --target (1.2) for every workload; exit 1 when missed.

    .venv/bin/python bench/hf_many_subjects.py [--per-subject 5] [--rounds 2] [--workloads ppl,gen]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from hf_multiple_choice import DEFAULT_DATA, tokenizer_corpus  # noqa: E402

ONE = "miscellaneous"
TARGET = 1.2


def mmlu_subjects(data_dir: Path) -> list[str]:
    return sorted(p.name[: -len("_test.csv")] for p in (data_dir / "mmlu" / "data" / "test").glob("*_test.csv"))


def _rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [row for row in csv.reader(handle) if row]


def _write(path: Path, rows: Sequence[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


def build_data(source: Path, root: Path, per_subject: int) -> tuple[Path, Path, int]:
    """(many folder, one folder, questions): the same rows as 57 small subjects or one large one."""
    many, one = root / "many", root / "one"
    subjects = mmlu_subjects(source)
    picked: list[list[str]] = []
    for subject in subjects:
        rows = _rows(source / "mmlu" / "data" / "test" / f"{subject}_test.csv")[:per_subject]
        picked += rows
        _write(many / "mmlu" / "data" / "test" / f"{subject}_test.csv", rows)
        _write(many / "mmlu" / "data" / "dev" / f"{subject}_dev.csv",
               _rows(source / "mmlu" / "data" / "dev" / f"{subject}_dev.csv"))
    _write(one / "mmlu" / "data" / "test" / f"{ONE}_test.csv", picked)
    _write(one / "mmlu" / "data" / "dev" / f"{ONE}_dev.csv",
           _rows(source / "mmlu" / "data" / "dev" / f"{ONE}_dev.csv"))
    return many, one, len(picked)


def run_proctor(argv: list[str]) -> tuple[float, Path, float]:
    """(wall seconds, run folder, CPU seconds) of `python -m proctor <argv>` in a fresh process."""
    work = Path(argv[argv.index("-w") + 1])
    before = set(work.iterdir()) if work.is_dir() else set()
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "proctor", *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    if done.returncode != 0:
        raise SystemExit(f"proctor {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (run,) = set(work.iterdir()) - before
    return seconds, run, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prompt_tokens(run: Path) -> int:
    import json

    total = 0
    for path in (run / "predictions").rglob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            total += json.loads(line).get("prompt_tokens") or 0
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--per-subject", type=int, default=5, help="questions per MMLU subject (--limit)")
    parser.add_argument("--fewshot", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-out-len", type=int, default=8, help="new tokens per question (gen)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side; the best counts")
    parser.add_argument("--workloads", default="ppl,gen")
    parser.add_argument("--target", type=float, default=TARGET, help="net many/one ratio to stay under")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    if set(workloads) - {"ppl", "gen"}:
        parser.error("workloads are ppl and gen")
    if not (args.data_dir / "mmlu" / "data" / "test").is_dir():
        print(f"MMLU not found under {args.data_dir} (set PROCTOR_SHARED_DATASETS)")
        return 2

    import platformdirs
    import torch

    from proctor.tiny_model import build_tiny_model

    t0 = time.perf_counter()
    model_dir = args.model_dir or Path(platformdirs.user_cache_dir("proctor")) / "bench" / "llama-512x8"
    build_tiny_model(model_dir, hidden_size=512, num_layers=8, num_heads=8, vocab_size=8000,
                     extra_corpus=tokenizer_corpus(args.data_dir))
    with tempfile.TemporaryDirectory(prefix="proctor-many-") as tmp:
        many_dir, one_dir, n = build_data(args.data_dir, Path(tmp), args.per_subject)
        n_subjects = len(mmlu_subjects(args.data_dir))
        common = ["--hf-path", str(model_dir), "--batch-size", str(args.batch_size), "--device", "cpu",
                  "--fewshot", str(args.fewshot), "--mode", "infer", "--no-cache", "-w", str(Path(tmp) / "work")]

        def argv_of(side: str, workload: str, limit: int | None = None) -> list[str]:
            if side == "many":
                data, datasets, lim = many_dir, [f"mmlu_{workload}"], args.per_subject
            else:
                data, datasets, lim = one_dir, [f"mmlu-{ONE}_{workload}"], n
            extra = ["--max-out-len", str(args.max_out_len)] if workload == "gen" else []
            return ["run", *common, *extra, "--data-dir", str(data), "--datasets", *datasets,
                    "--limit", str(limit or lim)]

        print(f"{n_subjects} MMLU subjects x {args.per_subject} questions vs one subject ({ONE}) x {n}: "
              f"the same {n} questions, {args.fewshot}-shot; model {model_dir.name} (float32, CPU, "
              f"{torch.get_num_threads()} threads), batch size {args.batch_size}, gen {args.max_out_len} "
              f"new tokens; best of {args.rounds} rounds")
        fixed = min(run_proctor(argv_of("one", workloads[0], limit=1))[0] for _ in range(2))
        times: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        tokens: dict[tuple[str, str], int] = {}
        for _ in range(max(1, args.rounds)):
            for w in workloads:
                for side in ("many", "one"):
                    seconds, run, cpu_s = run_proctor(argv_of(side, w))
                    times.setdefault((side, w), []).append(seconds)
                    cpu.setdefault((side, w), []).append(cpu_s)
                    tokens[(side, w)] = prompt_tokens(run)

    print()
    print(f"{'workload':<9} {'many s':>8} {'one s':>8} {'ratio':>6} {'net ratio':>10} {'target':>7} "
          f"{'CPU ratio':>10}  prompt tokens many / one")
    print("-" * 96)
    missed = []
    for w in workloads:
        many_s, one_s = min(times[("many", w)]), min(times[("one", w)])
        ratio = many_s / one_s
        net = (many_s - fixed) / max(one_s - fixed, 1e-9)
        ok = net <= args.target
        if not ok:
            missed.append(w)
        cpu_ratio = min(cpu[("many", w)]) / min(cpu[("one", w)])
        print(f"{w:<9} {many_s:>8.1f} {one_s:>8.1f} {ratio:>6.2f} {net:>10.2f} {'<= ' + str(args.target):>7} "
              f"{cpu_ratio:>10.2f}  {tokens[('many', w)]} / {tokens[('one', w)]}{'' if ok else '  MISSED'}")
    print()
    print(f"many/one s: `proctor run --mode infer` wall time, fresh process (import, model load, inference, "
          f"records); fixed: the same on 1 question = {fixed:.1f}s; net ratio = (many - fixed) / (one - fixed); "
          f"CPU ratio: user + system seconds of the processes, best round each (informative: less "
          f"sensitive to other load on a shared machine)")
    rounds = "; ".join(f"{w} {side}: {', '.join(f'{t:.1f}' for t in times[(side, w)])}"
                       for w in workloads for side in ("many", "one"))
    print(f"every round, seconds: {rounds}")
    print(f"total {time.perf_counter() - t0:.0f}s")
    if missed:
        print(f"target missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
