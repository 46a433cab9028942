"""Local generation as users run it: `proctor run` against lm-evaluation-harness on the same prompts.

The case (issue "the benchmark's lead does not reach the command line"):

    proctor run --hf-path <model> --datasets mmlu_gen --limit 5 --max-out-len 8

57 MMLU subjects x 5 questions, the spec's default prompt (5 dev examples as chat turns,
fitted to max_seq_len 2048 by dropping examples) through the model's chat template, greedy,
8 new tokens, CPU float32, batch size 8. Model: the benchmark model of
bench/hf_multiple_choice.py (a random Llama, hidden 512, 8 layers, its tokenizer trained on
the dev splits, with a chat template), built here; nothing is downloaded.

Measured, each in a fresh process timed from start to exit (imports and model load
included), rounds alternating the two tools, the best round of each counting:
  Proctor CLI  `python -m proctor run ... --mode infer --no-cache`
  lm-eval      HFLM(pretrained=<model>, batch_size=8, dtype=float32, device=cpu), then
               `generate_until` (max_gen_toks 8, until "\\n", greedy) on exactly the prompts
               Proctor sent (its predictions' messages rendered with the same chat template)
and, in this process, the backend alone: HFBackend(batch_size=8).run_requests on the same
requests (load excluded; its load time printed apart), so that a gap between the backend and
the command line shows. Every prediction is checked question by question against
`model.generate` (greedy, batch 1, no padding) on the same token ids: Proctor's output must
equal it, lm-eval's must equal it cut at its first newline.
lm-eval runs in its own venv (bench/.venv-lmeval, set up on first use by
hf_multiple_choice.ensure_lmeval; never a dependency of Proctor).
Target: CLI / lm-eval <= --target (0.7); exit 1 when missed or a prediction differs.

    .venv/bin/python bench/hf_cli_generation.py [--rounds 2] [--limit 5] [--datasets mmlu_gen]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from hf_multiple_choice import DEFAULT_DATA, DEFAULT_LMEVAL_VENV, ensure_lmeval, tokenizer_corpus  # noqa: E402

TARGET = 0.7
MAX_SEQ_LEN = 2048  # Proctor's default for a local model; lm-eval takes the model's 4096
ENV = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")

# Runs inside the lm-eval venv: argv[1] the spec (JSON), argv[2] where the outputs go.
LMEVAL_RUNNER = r'''
import json, sys, time
started = time.perf_counter()
spec = json.load(open(sys.argv[1], encoding="utf-8"))
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

lm = HFLM(pretrained=spec["model"], batch_size=spec["batch_size"], device="cpu", dtype="float32")
loaded = time.perf_counter()
instances = [Instance(request_type="generate_until", doc={}, idx=0,
                      arguments=(ctx, {"until": ["\n"], "max_gen_toks": spec["max_tokens"], "do_sample": False}))
             for ctx in spec["prompts"]]
out = lm.generate_until(instances, disable_tqdm=True)
lengths = [len(lm.tok_encode(ctx)) for ctx in spec["prompts"]]
json.dump({"outputs": list(out), "lengths": lengths, "load_s": loaded - started,
           "generate_s": time.perf_counter() - loaded}, open(sys.argv[2], "w", encoding="utf-8"))
'''


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, CPU seconds of the child, the finished process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done


def run_cli(model_dir: Path, args: Any, work: Path) -> tuple[float, float, list[dict[str, Any]]]:
    """(wall s, CPU s, records) of one `proctor run` in a fresh process."""
    before = set(work.iterdir()) if work.is_dir() else set()
    cmd = [sys.executable, "-m", "proctor", "run", "--hf-path", str(model_dir), "--datasets", *args.datasets,
           "--limit", str(args.limit), "--max-out-len", str(args.max_out_len), "--batch-size", str(args.batch_size),
           "--device", "cpu", "--data-dir", str(args.data_dir), "--mode", "infer", "--no-cache", "-w", str(work)]
    wall, cpu, _ = timed(cmd)
    (run,) = set(work.iterdir()) - before
    records = []
    for path in sorted((run / "predictions").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record["_dataset"] = path.stem
            records.append(record)
    records.sort(key=lambda r: (r["_dataset"], r["item_id"]))
    return wall, cpu, records


def run_lmeval(python: Path, model_dir: Path, prompts: list[str], args: Any) -> tuple[float, float, dict[str, Any]]:
    """(wall s, CPU s, the runner's outputs) of one lm-eval process."""
    with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
        runner, spec, out = (Path(tmp) / n for n in ("runner.py", "spec.json", "out.json"))
        runner.write_text(LMEVAL_RUNNER, encoding="utf-8")
        spec.write_text(json.dumps({"model": str(model_dir), "batch_size": args.batch_size,
                                    "max_tokens": args.max_out_len, "prompts": prompts}), encoding="utf-8")
        wall, cpu, _ = timed([str(python), str(runner), str(spec), str(out)])
        return wall, cpu, json.loads(out.read_text(encoding="utf-8"))


def reference(model: Any, tokenizer: Any, ids: Sequence[Sequence[int]], max_tokens: int) -> list[str]:
    """model.generate, greedy, one prompt at a time (no padding), decoded as Proctor does."""
    import torch

    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    texts = []
    with torch.inference_mode():
        for row in ids:
            x = torch.tensor([list(row)])
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                                 do_sample=False, temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[0, x.shape[1]:].tolist()
            if any(t in eos_ids for t in new):
                new = new[: min(new.index(t) for t in eos_ids if t in new)]
            texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return texts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["mmlu_gen"])
    parser.add_argument("--limit", type=int, default=5, help="questions per subject")
    parser.add_argument("--max-out-len", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8, help="both tools' batch size")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per tool; the best counts")
    parser.add_argument("--target", type=float, default=TARGET, help="CLI / lm-eval seconds to stay under")
    parser.add_argument("--check", type=int, default=-1,
                        help="questions checked against model.generate (-1: all; it is slow: batch 1)")
    parser.add_argument("--lmeval-venv", type=Path, default=DEFAULT_LMEVAL_VENV)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.data_dir / "mmlu").is_dir():
        print(f"benchmark data not found at {args.data_dir} (set PROCTOR_SHARED_DATASETS)")
        return 2

    import asyncio

    import platformdirs
    import torch

    from proctor.config.schema import HFModelConfig
    from proctor.core import Message, Request
    from proctor.models.hf import HFBackend
    from proctor.tiny_model import build_tiny_model

    t0 = time.perf_counter()
    model_dir = args.model_dir or Path(platformdirs.user_cache_dir("proctor")) / "bench" / "llama-512x8"
    build_tiny_model(model_dir, hidden_size=512, num_layers=8, num_heads=8, vocab_size=8000,
                     extra_corpus=tokenizer_corpus(args.data_dir))
    python, why = ensure_lmeval(args.lmeval_venv, torch.__version__.split("+")[0])
    if python is None:
        print(f"lm-evaluation-harness: not available ({why})")
        return 1

    cli: list[tuple[float, float]] = []
    lme: list[tuple[float, float]] = []
    records: list[dict[str, Any]] = []
    lm_out: dict[str, Any] = {}
    lm_generate: list[float] = []  # lm-eval's generate_until alone, every round
    prompts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="proctor-cli-") as tmp:
        for k in range(max(1, args.rounds)):
            wall, cpu, got = run_cli(model_dir, args, Path(tmp) / "work")
            cli.append((wall, cpu))
            if k == 0:
                records = got
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
                prompts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
                           for r in records]
            elif [r["output"] for r in got] != [r["output"] for r in records]:
                print("Proctor's outputs changed between rounds")
                return 1
            wall, cpu, lm_out = run_lmeval(python, model_dir, prompts, args)
            lme.append((wall, cpu))
            lm_generate.append(lm_out["generate_s"])
            print(f"round {k + 1}: Proctor CLI {cli[-1][0]:.1f}s (CPU {cli[-1][1]:.0f}s), lm-eval {wall:.1f}s "
                  f"(CPU {cpu:.0f}s; load {lm_out['load_s']:.1f}s, generate_until {lm_out['generate_s']:.1f}s)",
                  flush=True)

    # The backend alone, in this process, on the requests the CLI sent.
    loaded = time.perf_counter()
    backend = HFBackend(HFModelConfig(path=str(model_dir), batch_size=args.batch_size, max_seq_len=MAX_SEQ_LEN,
                                      device="cpu"))
    asyncio.run(backend.start())
    load_s = time.perf_counter() - loaded
    lm = backend._lm
    assert lm is not None
    requests = [Request(kind="generate", messages=tuple(Message(role=m["role"], content=m["content"])
                                                        for m in r["prompt"]),
                        max_tokens=args.max_out_len) for r in records]
    alone = []
    answers: list[Any] = []
    for _ in range(max(1, args.rounds)):
        started = time.perf_counter()
        answers = backend.run_requests(requests)
        alone.append(time.perf_counter() - started)

    ids = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    n = len(records)
    check = range(n) if args.check < 0 else range(min(n, args.check))
    ref = reference(lm.model, lm.tokenizer, [ids[i] for i in check], args.max_out_len)
    cli_same = sum(records[i]["output"] == ref[j] for j, i in enumerate(check))
    alone_same = sum(answers[i].text == ref[j] for j, i in enumerate(check))
    lm_same = sum(lm_out["outputs"][i] == ref[j].split("\n")[0] for j, i in enumerate(check))
    same_ids = sum(len(ids[i]) == records[i]["prompt_tokens"] == lm_out["lengths"][i] for i in range(n))

    best_cli, best_lm = min(cli), min(lme)
    ratio = best_cli[0] / best_lm[0]
    tokens = [r["prompt_tokens"] for r in records]
    print()
    print(f"{n} questions ({' '.join(args.datasets)} --limit {args.limit}), prompts {sum(tokens) / n:.0f} tokens on "
          f"average (max {max(tokens)}; {sum(tokens)} in all), {args.max_out_len} new tokens; model "
          f"{model_dir.name} float32 CPU, {torch.get_num_threads()} threads; batch size {args.batch_size}; "
          f"best of {len(cli)} rounds; same prompt token ids on both sides: {same_ids}/{n}")
    print(f"{'':<34} {'seconds':>8} {'CPU s':>7} {'vs lm-eval':>11}")
    print("-" * 64)
    print(f"{'Proctor CLI (fresh process)':<34} {best_cli[0]:>8.1f} {best_cli[1]:>7.0f} {ratio:>10.2f}x"
          f"  target <= {args.target}{'' if ratio <= args.target else '  MISSED'}")
    print(f"{'lm-eval HFLM (fresh process)':<34} {best_lm[0]:>8.1f} {best_lm[1]:>7.0f} {1:>10.2f}x")
    print(f"{'Proctor backend alone':<34} {min(alone):>8.1f} {'':>7} {min(alone) / best_lm[0]:>10.2f}x"
          f"  + load {load_s:.1f}s; lm-eval's generate_until alone (best) {min(lm_generate):.1f}s: "
          f"{min(alone) / min(lm_generate):.2f}x")
    print(f"CLI - backend alone - load: {best_cli[0] - min(alone) - load_s:.1f}s (imports, datasets, prompts, "
          f"records; best rounds of each, so noise can make it negative)")
    print(f"identical to model.generate ({len(check)} questions): Proctor CLI {cli_same}, backend alone "
          f"{alone_same}, lm-eval (cut at its newline stop) {lm_same}")
    rounds = "; ".join(f"{a[0]:.1f} vs {b[0]:.1f} ({a[0] / b[0]:.2f}x)" for a, b in zip(cli, lme))
    print(f"every round, CLI vs lm-eval seconds: {rounds}; backend alone {', '.join(f'{t:.1f}' for t in alone)}; "
          f"total {time.perf_counter() - t0:.0f}s")
    ok = ratio <= args.target and cli_same == alone_same == lm_same == len(check) and same_ids == n
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
