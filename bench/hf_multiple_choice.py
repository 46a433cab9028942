"""HF backend benchmark: multiple-choice scoring and generation on real questions, CPU.

760 four-option questions (C-Eval val + MMLU test, spread over subjects, read from
the real files in shared/datasets), zero-shot prompts as `proctor run` renders them
in ppl mode, and a randomly initialised Llama model (hidden 512, 8 layers, float32,
built with proctor.tiny_model; its tokenizer is trained on the benchmarks' dev splits
so token counts are realistic). Measured in the same run:

  scoring   Proctor: HFBackend, each context encoded once, the continuations
            " A".." D" scored from its KV cache;
            naive: each option's full text context+continuation in its own
            forward pass (as lm-evaluation-harness does at batch size 1).
            Predictions must be identical (asserted); target: >= 3x faster.
  generate  8 new tokens per question, greedy: batch size 1 vs batched.

    .venv/bin/python bench/hf_multiple_choice.py [--questions 760] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PROCTOR_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
SPEEDUP_TARGET = 3.0


def load_questions(data_dir: Path, n: int) -> list[Any]:
    """(request, target) pairs: half C-Eval val, half MMLU test, a few per subject."""
    from proctor.datasets import get_benchmark, load_samples
    from proctor.prompts.multiple_choice import build_request

    picked: list[Any] = []
    for name, split, language in (("ceval", "val", "zh"), ("mmlu", "test", "en")):
        want = n // 2 if name == "ceval" else n - len(picked)
        bench = get_benchmark(name)
        per_subject = -(-want // len(bench.subjects))  # ceil
        got = []
        for subject in bench.subjects:
            title = subject.title_zh if language == "zh" else subject.title
            for sample in load_samples(name, subject.name, split, data_dir)[:per_subject]:
                request = build_request(sample, [], language=language, subject=title,
                                        mode="ppl", chat=False, max_tokens=8)
                got.append((request, sample.target))
        picked += got[:want]
    return picked


def tokenizer_corpus(data_dir: Path) -> list[str]:
    """Dev-split questions and options (never the evaluated ones) to train the tokenizer."""
    from proctor.datasets import get_benchmark, load_samples

    lines = []
    for name in ("ceval", "mmlu"):
        for subject in get_benchmark(name).subjects:
            for s in load_samples(name, subject.name, "dev", data_dir):
                lines.append(str(s.fields["question"]))
                lines += [str(v) for v in s.fields["options"].values()]
    return lines


def naive_scores(model: Any, tokenizer: Any, requests: Sequence[Any], max_len: int
                 ) -> list[list[float]]:
    """One full forward pass per option (context + continuation), batch size 1."""
    import torch

    from proctor.models.hf_loglikelihood import tokenize_scored

    out = []
    with torch.inference_mode():
        for r in requests:
            row = []
            for c in r.continuations:
                s = tokenize_scored(tokenizer, r.context, c, max_len)
                ids = torch.tensor([s.ids])
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                picked = logprobs.gather(-1, ids[0, 1:, None])[:, 0]
                row.append(float(picked[s.start - 1:].sum()))
            out.append(row)
    return out


def argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=760)
    parser.add_argument("--batch-size", type=int, default=8, help="Proctor's batch size")
    parser.add_argument("--gen-batch-size", type=int, default=8,
                        help="(on CPU, bigger batches pad more and gain nothing)")
    parser.add_argument("--naive-limit", type=int, default=120,
                        help="questions scored the naive way (0: all; it is ~4x slower)")
    parser.add_argument("--gen-batch1-limit", type=int, default=40,
                        help="questions generated at batch size 1 (a subset: it is slow)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="where the benchmark model is built/cached")
    args = parser.parse_args(argv)

    import platformdirs
    import torch

    from proctor.config.schema import HFModelConfig
    from proctor.core import Request
    from proctor.models.hf import HFBackend
    from proctor.tiny_model import build_tiny_model

    if not (args.data_dir / "ceval").is_dir():
        print(f"benchmark data not found at {args.data_dir} (set PROCTOR_SHARED_DATASETS)")
        return 2
    t0 = time.perf_counter()
    questions = load_questions(args.data_dir, args.questions)
    model_dir = args.model_dir or Path(platformdirs.user_cache_dir("proctor")) / "bench" / "llama-512x8"
    build_tiny_model(model_dir, hidden_size=512, num_layers=8, num_heads=8, vocab_size=8000,
                     extra_corpus=tokenizer_corpus(args.data_dir))
    backend = HFBackend(HFModelConfig(path=str(model_dir), batch_size=args.batch_size,
                                      max_seq_len=2048))
    import asyncio

    asyncio.run(backend.start())
    lm = backend._lm
    assert lm is not None
    requests = [r for r, _ in questions]
    targets = [t for _, t in questions]
    n = len(requests)
    ctx_tokens = [len(lm.tokenizer(r.context)["input_ids"]) for r in requests]
    params = sum(p.numel() for p in lm.model.parameters())
    print(f"{n} questions (C-Eval val {sum(1 for r in requests if '答案' in r.context)}, "
          f"MMLU test {sum(1 for r in requests if '答案' not in r.context)}); "
          f"context {sum(ctx_tokens) / n:.0f} tokens on average (max {max(ctx_tokens)}); "
          f"model {params / 1e6:.1f}M parameters, vocab {len(lm.tokenizer)}, float32, "
          f"{torch.get_num_threads()} CPU threads; setup {time.perf_counter() - t0:.1f}s")

    # Warm-up (first-call allocations, kernel selection) outside the timings.
    backend.loglikelihood_batch(requests[:2])
    naive_scores(lm.model, lm.tokenizer, requests[:1], 2048)

    t = time.perf_counter()
    answers = backend.loglikelihood_batch(requests)
    proctor_s = time.perf_counter() - t
    assert all(a.ok for a in answers), [a.error for a in answers if not a.ok][:3]
    proctor_ll = [list(a.loglikelihoods or ()) for a in answers]

    # The naive method is ~4x slower: run it on an evenly spaced subset (same length
    # mix), and time Proctor again on exactly that subset for the head-to-head ratio.
    k = n if args.naive_limit <= 0 else min(n, args.naive_limit)
    subset = [round(i * n / k) for i in range(k)]
    t = time.perf_counter()
    backend.loglikelihood_batch([requests[i] for i in subset])
    proctor_sub_s = time.perf_counter() - t
    t = time.perf_counter()
    naive_ll = naive_scores(lm.model, lm.tokenizer, [requests[i] for i in subset], 2048)
    naive_s = time.perf_counter() - t

    proctor_pred = ["ABCD"[argmax(v)] for v in proctor_ll]
    naive_pred = ["ABCD"[argmax(v)] for v in naive_ll]
    max_diff = max(abs(a - b) for i, pb in zip(subset, naive_ll)
                   for a, b in zip(proctor_ll[i], pb))
    same = sum(proctor_pred[i] == p for i, p in zip(subset, naive_pred))
    accuracy = 100.0 * sum(p == t for p, t in zip(proctor_pred, targets)) / n
    speedup = naive_s / proctor_sub_s

    # Generation: 8 new tokens for each question's prompt, greedy.
    gen_requests = [Request(kind="generate", prompt=r.context, max_tokens=8) for r in requests]
    sub = [gen_requests[i] for i in subset[: args.gen_batch1_limit]]
    one = HFBackend(HFModelConfig(path=str(model_dir), batch_size=1, max_seq_len=2048))
    many = HFBackend(HFModelConfig(path=str(model_dir), batch_size=args.gen_batch_size,
                                   max_seq_len=2048))
    asyncio.run(one.start())
    asyncio.run(many.start())
    many.generate_batch(gen_requests[:2])
    t = time.perf_counter()
    gen_one = one.generate_batch(sub)
    one_s = time.perf_counter() - t
    t = time.perf_counter()
    gen_many = many.generate_batch(gen_requests)
    many_s = time.perf_counter() - t
    assert all(g.ok for g in gen_many)
    gen_same = sum(a.text == gen_many[i].text for i, a in zip(subset, gen_one))

    part = "" if k == n else f" (subset of {k})"
    rows = [
        ("scoring", f"naive: 4 full passes/question, batch 1{part}", k, naive_s),
        ("scoring", f"Proctor: context once, batch {args.batch_size}{part}", k, proctor_sub_s),
        ("scoring", f"Proctor: context once, batch {args.batch_size}", n, proctor_s),
        ("generate", "batch 1" + (f" (subset of {len(sub)})" if len(sub) < n else ""),
         len(sub), one_s),
        ("generate", f"batch {args.gen_batch_size}", n, many_s),
    ]
    print()
    print(f"{'task':<9} {'method':<56} {'questions':>9} {'wall s':>8} {'samples/s':>10}")
    print("-" * 96)
    for task, method, count, secs in rows:
        print(f"{task:<9} {method:<56} {count:>9} {secs:>8.2f} {count / secs:>10.2f}")
    print()
    print(f"scoring speed-up on the same {k} questions: {speedup:.2f}x (target >= "
          f"{SPEEDUP_TARGET:.0f}x); identical predictions {same}/{k}; "
          f"max |log-likelihood difference| {max_diff:.2e}; "
          f"accuracy {accuracy:.1f}% (random model: ~25% expected)")
    gen_speedup = (len(gen_requests) / many_s) / (len(sub) / one_s)
    print(f"generation speed-up, batch {args.gen_batch_size} vs 1: {gen_speedup:.2f}x in "
          f"samples/s; identical outputs on the {len(sub)} questions run at both: "
          f"{gen_same}/{len(sub)}")
    print(f"total {time.perf_counter() - t0:.0f}s")
    assert same == k, f"predictions differ on {k - same} questions"
    if speedup < SPEEDUP_TARGET:
        print(f"WARNING: scoring speed-up {speedup:.2f}x is below the {SPEEDUP_TARGET:.0f}x target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
