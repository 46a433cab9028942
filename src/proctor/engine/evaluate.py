"""The eval and report stages: score the records on disk, write results/*.json, the summary and report."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Sequence

from proctor.core import Result
from proctor.engine.diskio import write_json_atomic
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir
from proctor.engine.store import PredictionStore
from proctor.engine.task import count_unanswered


def count_unfinished(run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset]) -> int:
    """Samples without a successful record (failed or never answered): what `-r` would send again."""
    return sum(
        count_unanswered(dataset.samples, PredictionStore(run.predictions(model, dataset.config.abbr)).load())
        for model in model_names
        for dataset in prepared
    )


def evaluate_run(
    run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset], *, rescore: bool = False
) -> list[Result]:
    """Score every (model, dataset) from the records on disk and write results/*.json.

    `rescore`: extract the answers again from the stored outputs (after changing extraction).
    """
    from proctor.engine.scoring import rescore as rescore_record
    from proctor.metrics import accuracy_result

    results = []
    for model in model_names:
        for dataset in prepared:
            records = PredictionStore(run.predictions(model, dataset.config.abbr)).load()
            kind = "loglikelihood" if dataset.config.mode == "ppl" else "generate"
            selected = []
            for sample in dataset.samples:
                record = records.get(sample.id)
                if record is None:
                    continue
                selected.append(rescore_record(record, kind, sample) if rescore else record)
            result = accuracy_result(selected, model, dataset.config.abbr)
            missing = len(dataset.samples) - len(selected)
            if missing:
                # A sample with no record at all (interrupted run) counts as not answered.
                result = replace(result, n_failed=result.n_failed + missing)
            write_json_atomic(run.result(model, dataset.config.abbr), result.to_json())
            results.append(result)
    return results


def load_results(run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset]) -> list[Result]:
    results = []
    for model in model_names:
        for dataset in prepared:
            path = run.result(model, dataset.config.abbr)
            if path.is_file():
                results.append(Result.from_json(json.loads(path.read_text(encoding="utf-8"))))
    return results


def write_reports(
    run: RunDir,
    model_names: Sequence[str],
    prepared: Sequence[PreparedDataset],
    results: Sequence[Result],
    *,
    console: Any,
) -> Any:
    from proctor.config.groups import summary_groups
    from proctor.report import DatasetRowInfo, build_summary, print_summary, write_html_report, write_summary

    rows = [DatasetRowInfo(p.config.abbr, p.version, p.config.mode) for p in prepared]
    groups = summary_groups([p.config for p in prepared])
    summary = build_summary(results, rows, groups, list(model_names))
    write_summary(summary, run.summary_dir)
    print_summary(summary, console=console)
    write_html_report(run.root, summary)
    return summary
