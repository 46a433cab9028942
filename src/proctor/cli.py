"""The `proctor` command. Parsing and exit codes only; the work happens in the packages."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from proctor import __version__
from proctor.errors import ConfigError, DataError, ProctorError, RunInterrupted

EXIT_OK, EXIT_FAILED_REQUESTS, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # `proctor list | head`: the reader has what it wanted. Quiet, as a tool killed by SIGPIPE.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    _setup_logging(debug)
    try:
        return int(args.handler(args, argv) or 0)
    except RunInterrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except ProctorError as exc:
        if debug and not isinstance(exc, (ConfigError, DataError)):  # a plain mistake needs no traceback
            import traceback

            traceback.print_exc(file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: every finished sample is saved; continue with `proctor run ... -r latest`", file=sys.stderr)
        return EXIT_INTERRUPTED


def _setup_logging(debug: bool) -> None:
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=debug, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # Piped to a file or CI log: one plain line per record, nothing wrapped.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, handlers=[handler], force=True)
    if not debug:
        # httpx logs every request at INFO; keep it for --debug only.
        logging.getLogger("httpx").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proctor", description="Evaluate large language models on benchmarks."
    )
    parser.add_argument("--version", action="version", version=f"proctor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="evaluate models on datasets",
        description="Evaluate models on datasets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  proctor run --api-base http://127.0.0.1:23333/v1 --datasets ceval_gen cmmlu_gen --limit 20\n"
            "  proctor run --hf-path Qwen/Qwen2.5-0.5B-Instruct --datasets mmlu_ppl\n"
            "  proctor run eval.yaml -r latest\n"
            "  proctor run -r latest                 (the run's own models and datasets, from its config.json)\n"
            "config file and command line: the command line wins. Models given on it (--models, --api-base,\n"
            "  --hf-path) replace the file's models, --datasets replaces its datasets, and each other flag\n"
            "  overrides the file's setting: a model flag (--max-seq-len, --max-out-len, --temperature,\n"
            "  --batch-size, --qps, ...) sets it on every model of the run that has that setting, and is\n"
            "  refused when none has; --limit, --range, --fewshot apply to every dataset.\n"
            "exit codes: 0 done, 1 some requests failed (retry them with -r), 2 a mistake in the input"
        ),
    )
    _add_run_arguments(run)
    run.set_defaults(handler=_cmd_run)

    lst = sub.add_parser("list", help="list dataset names and model presets")
    # No argparse choices: `proctor list ceval` is a pattern over both lists, not a usage error.
    lst.add_argument("what", nargs="?", default=None, metavar="datasets|models", help="which list (default: both)")
    lst.add_argument("pattern", nargs="*", default=[], help="only names containing this text (several: any of them; "
                     "each must match something)")
    lst.set_defaults(handler=_cmd_list)

    data = sub.add_parser("data", help="download benchmark data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download a benchmark from the Hugging Face hub")
    # No argparse choices: the names come from the spec files, checked with a did-you-mean.
    fetch.add_argument("benchmark", help="a benchmark with a download source, e.g. ceval, cmmlu, mmlu")
    fetch.add_argument("--dest", default=None, help="data root to write into (default: the user cache dir)")
    fetch.set_defaults(handler=_cmd_fetch)

    cache = sub.add_parser("cache", help="inspect or clear the response cache")
    cache.add_argument("action", choices=["stats", "clear"])
    cache.set_defaults(handler=_cmd_cache)

    compare = sub.add_parser(
        "compare",
        help="compare two runs (or two models of one run) with paired significance tests",
        description="Compare run B against run A question by question: both scores, B-A with its 95% interval,\n"
                    "a paired test (exact McNemar for right/wrong, a seeded bootstrap otherwise) and a verdict per\n"
                    "dataset and group. Writes compare.{json,md,csv} into the later run's folder (or -o DIR) and\n"
                    "adds the comparison to its report.html.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  proctor compare latest~1 latest\n"
            "  proctor compare 20250101_120000 20250102_090000 --diff ceval-law\n"
            "  proctor compare latest --models model-a model-b\n"
            "  proctor compare outputs/run1 outputs/run2 --strict\n"
            "exit codes: 0 compared, 2 a mistake in the input or, with --strict, runs that measure different things"
        ),
    )
    compare.add_argument("runs", nargs="+", metavar="RUN",
                         help="RUN_A RUN_B (run ids under -w, folders, latest, latest~1), or one RUN with --models A B")
    compare.add_argument("--models", nargs="+", default=[], metavar="MODEL",
                         help="two models of one run, or the model of both runs (or A's then B's)")
    compare.add_argument("-w", "--work-dir", default=None,
                         help="where run ids and latest~N are looked up (default outputs/, or the one folder in "
                              "it that holds runs, as a config's work_dir = 'outputs/demo' makes)")
    compare.add_argument("-o", "--output", default=None, metavar="DIR",
                         help="write compare.{json,md,csv} here (default: the later run's folder)")
    compare.add_argument("--strict", action="store_true",
                         help="refuse (exit 2) when the runs differ in prompts, data files or scorer")
    compare.add_argument("--diff", nargs="+", default=[], metavar="DATASET",
                         help="also list the questions of DATASET (or group) whose score changed, with both answers")
    j = compare.add_argument_group("judged comparison (open-ended answers: a judge compares A's and B's answers)")
    j.add_argument("--judge-api-base", default=None, metavar="URL", help="the judge: an OpenAI-compatible endpoint")
    j.add_argument("--judge-api-model", default=None, metavar="NAME", help="the judge's model id at --judge-api-base")
    j.add_argument("--judge-api-key-env", default=None, metavar="VAR", help="the judge's key variable")
    j.add_argument("--judge-model", default=None, metavar="PRESET", help="the judge as a model preset")
    j.add_argument("--datasets", nargs="+", default=[], metavar="DATASET", help="judge only these datasets")
    j.add_argument("--data-dir", default=None, help="where Arena-Hard's judge config is (its prompt is used)")
    j.add_argument("--no-cache", dest="cache", action="store_false", default=True, help="send every judge request")
    compare.set_defaults(handler=_cmd_compare)

    serve = sub.add_parser("serve", help="serve a local model as an OpenAI-compatible API")
    from proctor.serve.cli import add_arguments as add_serve_arguments

    add_serve_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)
    return parser


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="a .py or .yaml file defining `models` and `datasets`")
    g = p.add_argument_group("models")
    g.add_argument("--models", nargs="+", default=[], metavar="NAME", help="model presets (see `proctor list models`)")
    g.add_argument("--api-base", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:23333/v1")
    g.add_argument("--api-model", help="model id at --api-base (default: read from GET /v1/models)")
    g.add_argument("--api-key-env", default=None, help="environment variable holding the API key (default OPENAI_API_KEY)")
    g.add_argument("--api-type", choices=["chat", "completions"], default=None, help="chat (default) or completions for base models")
    g.add_argument("--revision", default=None,
                   help="what the server serves under the model name (e.g. a checkpoint step): part of the cache identity")
    g.add_argument("--max-concurrency", type=_concurrency, default=None,
                   help="requests in flight per API model (default 32); auto: find the server's capacity")
    g.add_argument("--adaptive", action="store_true", default=None,
                   help="find the server's capacity below --max-concurrency (back off on 429/503 and rising latency)")
    g.add_argument("--qps", type=float, default=None, help="requests per second limit")
    g.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    g.add_argument("--tpm", type=float, default=None, help="tokens per minute limit (prompt + max tokens, corrected by usage)")
    g.add_argument("--retry", type=int, default=None, help="retries per failed request")
    g.add_argument("--timeout", type=float, default=None, help="seconds per request")
    g.add_argument("--api-batch", action="store_true", default=None,
                   help="send through the provider's Batch API (/v1/files + /v1/batches: half price, answers "
                        "within 24 h); -r picks up submitted batches")
    g.add_argument("--batch-retry", choices=["online", "batch"], default=None,
                   help="--api-batch: send failed or expired lines online (default) or in a new batch")
    g.add_argument("--price-per-million-input", type=float, default=None, metavar="USD",
                   help="online price of a million prompt tokens, for --dry-run's cost estimate")
    g.add_argument("--price-per-million-output", type=float, default=None, metavar="USD",
                   help="online price of a million completion tokens, for --dry-run's cost estimate")
    g.add_argument("--hf-path", help="a local Hugging Face checkpoint or hub id")
    g.add_argument("--tokenizer-path", default=None, help="default: --hf-path")
    g.add_argument("--batch-size", type=_batch_size, default=None, help="int or auto (default 8)")
    g.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default=None, help="auto: bfloat16 on GPU, float32 on CPU")
    g.add_argument("--device", default=None, help="e.g. cuda:0 or cpu (default: cuda when available)")
    g.add_argument("--trust-remote-code", action="store_true", default=None, help="run the model repo's own code (InternLM needs it)")
    g.add_argument("--chat", dest="chat", action="store_true", default=None, help="force chat formatting")
    g.add_argument("--no-chat", dest="chat", action="store_false", help="force plain-text formatting")
    g.add_argument("--temperature", type=float, default=None, help="default 0 (greedy; cached)")
    g.add_argument("--max-out-len", type=int, default=None, help="tokens to generate (default 256)")
    g.add_argument("--max-seq-len", type=int, default=None, help="prompt + answer tokens; few-shot examples are dropped to fit")
    g.add_argument("--reasoning", action="store_true", default=None,
                   help="a reasoning model: answers get 32768 tokens unless --max-out-len is given (see README)")
    g.add_argument("--reasoning-effort", default=None, metavar="LEVEL",
                   help="sent as reasoning_effort to OpenAI-style APIs (e.g. low, medium, high)")
    d = p.add_argument_group("datasets")
    d.add_argument("--datasets", nargs="+", default=[], metavar="NAME",
                   help="e.g. ceval_gen cmmlu-anatomy mmlu_ppl ceval_gen_circular, or your own file: "
                        "./my.jsonl, ./my.csv (multiple choice when it has A/B/... columns), ./mybench.yaml (a task spec)")
    d.add_argument("--limit", type=int, default=None, help="first N samples of each subject")
    d.add_argument("--range", dest="range_", default=None, metavar="[A:B]", help="slice of each subject, e.g. [0:10]")
    d.add_argument("--fewshot", type=int, default=None, help="few-shot examples from the dev split (default 5)")
    d.add_argument(
        "--ppl-continuations",
        choices=["letters", "options"],
        default=None,
        help="*_ppl datasets: score the letters (default) or the option texts (adds acc_norm)",
    )
    d.add_argument("--circular", action="store_true", default=None,
                   help="ask every multiple-choice question in its cyclic option orders (CircularEval)")
    d.add_argument("--judge", action="store_true", default=None,
                   help="free-form datasets: the benchmark's rule first, then the judge model for what it rejects "
                        "(scorer cascade; needs --judge-api-base or --judge-model or `judge:` in the config)")
    d.add_argument("--judge-api-base", default=None, metavar="URL", help="the judge: an OpenAI-compatible endpoint")
    d.add_argument("--judge-api-model", default=None, metavar="NAME", help="the judge's model id at --judge-api-base")
    d.add_argument("--judge-api-key-env", default=None, metavar="VAR", help="the judge's key variable (default OPENAI_API_KEY)")
    d.add_argument("--judge-model", default=None, metavar="PRESET", help="the judge as a model preset (see `proctor list models`)")
    d.add_argument("--repeats", "--num-samples", dest="repeats", type=int, default=None, metavar="K",
                   help="ask each question K times (avg@K, pass@K, maj@K; a seed per repeat); "
                        "needs --temperature > 0 (--num-samples: the older name)")
    d.add_argument("--custom-dataset-path", default=None, metavar="FILE",
                   help="OpenCompass-style custom dataset (.jsonl/.csv; FILE.meta.json beside it is read)")
    d.add_argument("--custom-dataset-meta-path", default=None, metavar="FILE", help="its meta.json elsewhere")
    d.add_argument("--custom-dataset-data-type", choices=["mcq", "qa"], default=None,
                   help="override the detected type of the custom dataset")
    d.add_argument("--custom-dataset-infer-method", choices=["gen", "ppl"], default=None,
                   help="gen (default) or ppl for the custom dataset")
    d.add_argument("--data-dir", default=None, help="data root (default: $PROCTOR_DATA, ./data, the cache dir)")
    e = p.add_argument_group("execution")
    e.add_argument("-w", "--work-dir", default=None, help="outputs folder (default outputs/)")
    e.add_argument("-r", "--reuse", nargs="?", const="latest", default=None, metavar="RUN_ID",
                   help="continue a run (default: the latest): only samples without a successful record are sent")
    e.add_argument("--mode", choices=["all", "infer", "eval", "report"], default=None,
                   help="run one stage from what is on disk (eval/report use -r RUN_ID or the latest run)")
    e.add_argument("--debug", action="store_true", help="one process, sequential, live logs, tracebacks")
    e.add_argument("--max-num-workers", type=int, default=None,
                   help="tasks running at once (default: 32 for API models; a local model answers all its tasks from "
                        "one queue, batched across subjects, unless this caps them; one replica per free GPU set)")
    e.add_argument("--max-partition-size", type=int, default=None,
                   help="split datasets larger than this into shards (tasks)")
    e.add_argument("--cache", dest="cache", action="store_true", default=None,
                   help="reuse and store deterministic responses (temperature 0; on by default)")
    e.add_argument("--no-cache", dest="cache", action="store_false", help="send every request")
    from proctor.engine.runners import RUNNERS

    e.add_argument("--runner", choices=list(RUNNERS), default=None,
                   help="; ".join(f"{r.name}: {r.help}" for r in RUNNERS.values()))
    e.add_argument("--ray-address", default=None, help="a Ray cluster to join (default: start a local one)")
    s = p.add_argument_group("slurm (--runner slurm)")
    s.add_argument("--partition", dest="slurm_partition", default=None, help="the jobs' Slurm partition")
    s.add_argument("--gres", dest="slurm_gres", default=None,
                   help="generic resources of a local model's jobs (default gpu:<num_gpus>)")
    s.add_argument("--time", dest="slurm_time", default=None, help="the jobs' time limit, e.g. 2:00:00")
    s.add_argument("--slurm-args", default=None, metavar='"..."', help="more sbatch options, e.g. \"--qos=high --mem=32G\"")
    s.add_argument("--slurm-retry", type=int, default=None, metavar="N",
                   help="submit a failed or preempted job again up to N times (default 2; --retry sets it too)")
    e.add_argument("--dry-run", action="store_true", default=None, help="print the plan and stop")


def _cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from proctor.api import build_run_config
    from proctor.engine.run import execute
    from rich.console import Console

    if args.work_dir is not None and not args.work_dir.strip():
        raise ProctorError("-w/--work-dir is empty: name the outputs folder (default outputs/)")
    config = build_run_config(
        config_file=args.config,
        models=args.models,
        datasets=[*args.datasets, *_custom_dataset(args)],
        api=_cli_model(args, "api"),
        hf=_cli_model(args, "hf"),
        model_overrides=_model_flags(args),
        judge=_cli_judge(args),
        dataset_overrides={
            "limit": args.limit,
            "range": args.range_,
            "fewshot": args.fewshot,
            "continuations": args.ppl_continuations,
            "circular": args.circular,
            "repeats": args.repeats,
            "judge": args.judge,
        },
        run_options={
            "work_dir": args.work_dir,
            "data_dir": args.data_dir,
            "debug": args.debug or None,
            "max_num_workers": args.max_num_workers,
            "max_partition_size": args.max_partition_size,
            "mode": args.mode,
            "reuse": args.reuse,
            "cache": args.cache,
            "runner": args.runner,
            "ray_address": args.ray_address,
            **{k: getattr(args, k) for k in _SLURM_FLAGS},
            "dry_run": args.dry_run,
        },
    )
    _check_flag_use(args, config)
    given = [k for k in _SLURM_FLAGS if getattr(args, k) is not None]
    if given and config.runner != "slurm":  # they would be ignored
        raise ProctorError(f"{_SLURM_FLAGS[given[0]]} applies to --runner slurm (this run's runner is {config.runner})")
    console = Console()
    outcome = execute(config, argv=["proctor", *argv], console=console)
    if config.dry_run:
        from proctor.engine.plan import describe_plan

        for line in describe_plan(outcome.plan, outcome.to_do if config.reuse else None):
            console.print(line, markup=False, highlight=False)
        for name, device in outcome.devices.items():
            console.print(f"  {name} runs on {device}", markup=False, highlight=False)
        for line in outcome.notes:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    console.print(f"outputs: {outcome.run.root}", markup=False)
    if outcome.failed:
        print(
            f"error: {outcome.failed} samples have no answer (their requests failed, see the predictions' "
            "`error` field, or were never sent) and were not scored; "
            f"retry them with `proctor run ... -r {outcome.run.run_id}`",
            file=sys.stderr,
        )
        return EXIT_FAILED_REQUESTS
    return EXIT_OK


# The smallest prompt + answer budget that leaves a prompt any room (`--max-seq-len 1` is a slip).
MIN_SEQ_LEN = 32


def _check_flag_use(args: argparse.Namespace, config: Any) -> None:
    """Flags that would be silently ignored by every dataset or model of the run are refused."""
    from proctor.config.schema import model_abbr
    from proctor.tasks import spec_of
    from proctor.tasks.resolve import JUDGES

    for model in config.models:
        seq = getattr(model, "max_seq_len", None)
        if seq is not None and seq < MIN_SEQ_LEN:
            raise ProctorError(
                f"--max-seq-len {seq} (model {model_abbr(model)}) leaves no room for a prompt: it is prompt + "
                f"answer tokens (e.g. 2048; at least {MIN_SEQ_LEN})"
            )
    judged = [d for d in config.datasets if (d.scorer or spec_of(d).scorer.name) in JUDGES]
    first = config.datasets[0].abbr
    if args.judge:
        if config.judge is None:
            raise ProctorError("--judge: no judge model is given: add --judge-api-base URL or --judge-model PRESET "
                               "(or `judge:` in the config file)")
        if not judged:
            raise ProctorError(f"--judge: no dataset of this run is free-form ({first} is scored by its own rule); "
                               "a judge grades free-form answers only: leave out --judge")
    elif (args.judge_api_base or args.judge_model) and not judged:
        flag = "--judge-api-base" if args.judge_api_base else "--judge-model"
        raise ProctorError(f"{flag}: no dataset of this run is scored by a judge; add --judge to have it grade "
                           "the free-form answers the benchmark's rule rejects")
    if args.ppl_continuations and not any(d.mode == "ppl" for d in config.datasets):
        raise ProctorError(f"--ppl-continuations applies to *_ppl datasets (scored by log-likelihood); {first} is "
                           "scored from generated text: use e.g. ceval_ppl, or leave the flag out")


_SLURM_FLAGS = {"slurm_partition": "--partition", "slurm_gres": "--gres", "slurm_time": "--time",
                "slurm_args": "--slurm-args", "slurm_retry": "--slurm-retry"}

# Model flags, as `args` attribute -> config field. Each kind's own flags given without that kind
# of model would be ignored, so they are refused; the shared ones apply to either kind.
_API_FLAGS = {
    "api_model": "model",
    "api_key_env": "api_key_env",
    "api_type": "api_type",
    "revision": "revision",
    "max_concurrency": "max_concurrency",
    "adaptive": "adaptive",
    "qps": "qps",
    "rpm": "rpm",
    "tpm": "tpm",
    "retry": "retry",
    "timeout": "timeout",
    "reasoning_effort": "reasoning_effort",
    "api_batch": "batch",
    "batch_retry": "batch_retry",
    "price_per_million_input": "price_per_million_input",
    "price_per_million_output": "price_per_million_output",
}
_HF_FLAGS = {
    "tokenizer_path": "tokenizer_path",
    "batch_size": "batch_size",
    "dtype": "dtype",
    "device": "device",
    "trust_remote_code": "trust_remote_code",
    "chat": "chat",
}
_SHARED_FLAGS = ("temperature", "max_out_len", "max_seq_len", "reasoning")
_MODEL_KINDS = (("api", "api_base", "--api-base", _API_FLAGS), ("hf", "hf_path", "--hf-path", _HF_FLAGS))


def _flag_name(dest: str) -> str:
    return "--chat/--no-chat" if dest == "chat" else "--" + dest.replace("_", "-")


def _cli_model(args: argparse.Namespace, kind: str) -> dict[str, Any] | None:
    """The model config that `--api-base`/`--hf-path` and their flags describe, or None."""
    _, anchor, anchor_flag, own = next(k for k in _MODEL_KINDS if k[0] == kind)
    location = getattr(args, anchor)
    if not location:
        return None  # its flags still apply to the run's other models (see _model_flags)
    fields: dict[str, Any] = {"type": kind, "api_base" if kind == "api" else "path": location}
    for dest, field in (*own.items(), *((f, f) for f in _SHARED_FLAGS)):
        if getattr(args, dest) is not None:
            fields[field] = getattr(args, dest)
    return fields


def _model_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Every model flag given, as config field -> value: they also set the models of a config file,
    of `--models` presets and of `-r` (the command line wins over the file)."""
    flags = {**_API_FLAGS, **_HF_FLAGS, **{f: f for f in _SHARED_FLAGS}}
    return {field: getattr(args, dest) for dest, field in flags.items() if getattr(args, dest) is not None}


def _cli_judge(args: argparse.Namespace) -> dict[str, Any] | str | None:
    """The judge model the --judge-* flags describe, or None."""
    if args.judge_model and args.judge_api_base:
        raise ProctorError("give the judge either as --judge-model PRESET or as --judge-api-base URL, not both")
    if args.judge_model:
        return str(args.judge_model)
    if not args.judge_api_base:
        given = [f for f in ("judge_api_model", "judge_api_key_env") if getattr(args, f) is not None]
        if given:
            raise ProctorError(f"--{given[0].replace('_', '-')} applies to a judge given with --judge-api-base")
        return None
    judge: dict[str, Any] = {"type": "api", "api_base": args.judge_api_base, "abbr": "judge"}
    if args.judge_api_model:
        judge["model"] = args.judge_api_model
    if args.judge_api_key_env:
        judge["api_key_env"] = args.judge_api_key_env
    return judge


def _custom_dataset(args: argparse.Namespace) -> list[Any]:
    """`--custom-dataset-path` (OpenCompass's flag) as one more dataset config."""
    extras = {"meta": args.custom_dataset_meta_path, "data_type": args.custom_dataset_data_type,
              "infer_method": args.custom_dataset_infer_method}
    if not args.custom_dataset_path:
        given = [k for k, v in extras.items() if v is not None]
        if given:
            raise ProctorError(f"--custom-dataset-{given[0].replace('_', '-')} needs --custom-dataset-path")
        return []
    from proctor.tasks.custom import custom_dataset_configs

    return custom_dataset_configs(args.custom_dataset_path, **extras)


def _concurrency(text: str) -> int | str:
    """--max-concurrency: a count, or auto (found by the adaptive limit)."""
    return _batch_size(text)


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    from proctor.config.listing import print_listing

    what, patterns = args.what, list(args.pattern)
    if what not in (None, "datasets", "models"):
        if patterns and what.rstrip("s") in ("dataset", "model"):  # `proctor list dataset ceval`: a typo
            raise ProctorError(f"proctor list: {what!r} is not a list; use `proctor list datasets|models [PATTERN]`")
        what, patterns = None, [what, *patterns]
    print_listing(what, patterns)
    return EXIT_OK


def _cmd_fetch(args: argparse.Namespace, argv: list[str]) -> int:
    from pathlib import Path

    from proctor.datasets import fetch
    from proctor.tasks import get_spec

    path = fetch(get_spec(args.benchmark).data_source(), Path(args.dest) if args.dest else None)
    print(f"{args.benchmark}: data in {path}")
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace, argv: list[str]) -> int:
    from proctor.engine.cache import ResponseCache

    cache = ResponseCache()
    try:
        if args.action == "stats":
            stats = cache.stats()
            print(f"{stats.path}: {stats.entries} responses, {stats.bytes / 1e6:.1f} MB")
        else:
            print(f"{cache.path}: removed {cache.clear()} responses")
    finally:
        cache.close()
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace, argv: list[str]) -> int:
    from proctor.serve.cli import run as run_serve

    return run_serve(args)


def _cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from pathlib import Path

    from proctor.report.compare import (
        compare_runs,
        format_compare_text,
        later_run,
        resolve_run,
        write_compare,
    )

    if len(args.runs) > 2:
        raise ProctorError(f"proctor compare takes one or two runs, got {len(args.runs)}")
    from proctor.report.compare import work_dir_of_runs

    work_dir = args.work_dir if args.work_dir is not None else work_dir_of_runs("outputs")
    runs = [resolve_run(spec, work_dir) for spec in args.runs]
    a_run, b_run = (runs[0], runs[0]) if len(runs) == 1 else (runs[0], runs[1])
    if args.judge_api_base or args.judge_model:
        return _compare_judged(args, a_run, b_run)
    comparisons = compare_runs(a_run, b_run, args.models, strict=args.strict)
    for name in args.diff:
        for comparison in comparisons:
            comparison.changed_items(name)  # an unknown name is one line, before anything is written
    print(format_compare_text(comparisons, args.diff), end="")
    out = Path(args.output) if args.output else later_run(a_run, b_run)
    paths = write_compare(comparisons, out, args.diff)
    if (out / "results").is_dir() or (out / "config.json").is_file():
        from proctor.report import write_html_report

        paths.append(write_html_report(out))
    print(f"written: {', '.join(str(p) for p in paths)}")
    return EXIT_OK


def _compare_judged(args: argparse.Namespace, a_run: Any, b_run: Any) -> int:
    """`proctor compare A B --judge-api-base URL`: B's answers against A's, judged (engine/judged_compare.py)."""
    import asyncio
    from pathlib import Path

    from proctor.api import _JUDGE_FLAGS
    from proctor.config.models import model_from_dict
    from proctor.config.registry import resolve_model_preset
    from proctor.engine.judged_compare import format_judged, judge_compare, write_judged
    from proctor.report.compare import later_run, pair_models

    given = _cli_judge(args)
    judge = resolve_model_preset(given) if isinstance(given, str) else model_from_dict(
        given or {}, where="--judge-api-base", names=_JUDGE_FLAGS)
    out = Path(args.output) if args.output else later_run(a_run, b_run)
    pairs = pair_models(a_run, b_run, args.models)
    rows = asyncio.run(judge_compare(a_run, b_run, pairs, judge, out, data_dir=args.data_dir,
                                     datasets=args.datasets, cache=args.cache))
    name = getattr(judge, "model", None) or getattr(judge, "path", None) or "the judge"
    print(format_judged(rows, str(name)), end="")
    print(f"written: {write_judged(rows, out, {'judge': str(name), 'settings': judge.model_dump(mode='json', exclude={'api_key'})})}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
