"""The eval and report stages: score the records on disk, write scores, results, the summary and report."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Sequence

from proctor.core import Item, Record, Result, Score
from proctor.engine.diskio import write_json_atomic, write_text_atomic
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir
from proctor.engine.store import PredictionStore
from proctor.engine.judging import JudgeSession
from proctor.engine.task import count_unanswered, has_answer
from proctor.errors import ConfigError


def count_unfinished(run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset]) -> int:
    """Items without a successful record (failed or never answered): what `-r` would send again."""
    return sum(
        count_unanswered(dataset.items, PredictionStore(run.predictions(model, dataset.config.abbr)).load())
        for model in model_names
        for dataset in prepared
    )


def _score_line(item: Item, record: Record | None, score: Score | None) -> str:
    status = "scored" if score is not None else ("failed" if record is not None else "missing")
    line: dict[str, Any] = {"item_id": item.id, "sample_id": item.sample_id, "status": status,
                            "target": item.sample.target}
    if score is not None:
        line.update(answer=score.answer, value=score.value, correct=score.correct, rule=score.rule)
        if score.explanation:
            line["explanation"] = score.explanation
        if score.extra:
            line["extra"] = dict(score.extra)
    elif record is not None:
        line["error"] = record.error
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


async def score_dataset(
    records: dict[str, Record], dataset: PreparedDataset, model: str = "", judge: JudgeSession | None = None
) -> dict[str, Score]:
    """Scores by item id for the items with a successful record (and, for a judged dataset,
    a judge's answer where the judge had to look)."""
    from proctor.scoring import get_scorer, judge_scorer
    from proctor.scoring.stage import score_records

    task = dataset.task
    scorer = get_scorer(task.scorer, task.scorer_params)
    answered = [item for item in dataset.items if has_answer(records.get(item.id))]
    # An answer the server filtered or the model refused is what it is, not an answer to read.
    withheld = {i.id: _withheld(records[i.id].finish_reason or "") for i in answered
                if records[i.id].finish_reason in WITHHELD}
    to_score = [item for item in answered if item.id not in withheld]
    if judge_scorer(scorer):
        if judge is None:
            raise ConfigError(f"dataset {dataset.config.abbr} is scored by a judge; give the judge model")
        return {**withheld, **await judge.score(model, dataset, scorer, records, to_score)}
    scores = score_records(scorer, [(item.sample, records[item.id]) for item in to_score])
    return {**withheld, **{item.id: score for item, score in zip(to_score, scores)}}


def _judge_metrics(scores: dict[str, Score]) -> dict[str, float]:
    """For judged datasets: the share of judge replies without a verdict, and, where the rule
    was also applied to what the judge saw, how often the two disagree."""
    judged = [s for s in scores.values() if s.rule and (s.rule.startswith("judge_"))]
    if not judged:
        return {}
    extra = {"judge_unparsed": 100.0 * sum(1 for s in judged if s.rule == "judge_unparsed") / len(judged)}
    both = [s for s in judged if "rule_value" in s.extra and s.rule != "judge_unparsed"]
    if both:
        extra["rule_judge_disagreement"] = 100.0 * sum(1 for s in both if s.extra["rule_value"] != s.value) / len(both)
    return extra


# finish_reason values of answers that were withheld: scored wrong, counted in their own row.
WITHHELD = {"content_filter": "the server's content filter withheld the answer", "refused": "the model refused"}


def _withheld(reason: str) -> Score:
    return Score(0.0, answer=None, rule=reason, explanation=WITHHELD[reason])


def _withheld_share(scores: dict[str, Score]) -> dict[str, float]:
    """`withheld`: percent of the answered items filtered or refused, when there are any."""
    count = sum(1 for s in scores.values() if s.rule in WITHHELD)
    return {"withheld": 100.0 * count / len(scores)} if count else {}


def _breakdown(dataset: PreparedDataset, scores: dict[str, Score]) -> dict[str, float]:
    """Accuracy per value of each breakdown field (MATH-500: per subject and per level)."""
    from proctor.metrics import breakdown_metrics

    extra: dict[str, float] = {}
    for name in dataset.task.spec.breakdown:
        groups: dict[str, list[Score]] = {}
        for item in dataset.items:
            value = item.sample.fields.get(name, item.sample.meta.get(name))
            if value is not None and item.id in scores:
                groups.setdefault(f"{name}={value}", []).append(scores[item.id])
        extra.update(breakdown_metrics(dict(sorted(groups.items()))))
    return extra


async def evaluate_run(
    run: RunDir,
    model_names: Sequence[str],
    prepared: Sequence[PreparedDataset],
    *,
    judge: Any = None,
    cache: bool = True,
) -> list[Result]:
    """Score every (model, dataset) from the records on disk; write scores/ and results/.

    Scoring always starts from the stored raw outputs, so `--mode eval` after a change of
    scorer gives the new scores without a single request to the model evaluated (a judge is
    asked only what it has not answered before).
    """
    from proctor.engine.cache import open_cache

    response_cache = open_cache() if cache and judge is not None else None
    session = JudgeSession(run, judge, response_cache)
    try:
        return await _evaluate(run, model_names, prepared, session)
    finally:
        await session.close()
        if response_cache is not None:
            response_cache.close()


async def _evaluate(
    run: RunDir, model_names: Sequence[str], prepared: Sequence[PreparedDataset], session: JudgeSession
) -> list[Result]:
    from proctor.metrics import accuracy_result, circular_result, passk_result, repeats_result

    results = []
    for model in model_names:
        for dataset in prepared:
            abbr = dataset.config.abbr
            records = PredictionStore(run.predictions(model, abbr)).load()
            scores = await score_dataset(records, dataset, model, session)
            lines = [_score_line(i, records.get(i.id), scores.get(i.id)) for i in dataset.items]
            write_text_atomic(run.scores(model, abbr), "".join(line + "\n" for line in lines))
            generated = dataset.task.kind == "generate"
            if dataset.task.variants != "none":
                result = circular_result(dataset.items, scores, model, abbr, generated=generated)
            elif "pass@k" in dataset.task.spec.metrics:  # code: pass@1 and pass@k for every k
                result = passk_result(dataset.items, scores, model, abbr, generated=generated)
            elif dataset.task.repeats > 1:
                result = repeats_result(dataset.items, scores, model, abbr, generated=generated)
            else:
                # An item with no record at all (interrupted run) counts as not answered.
                result = accuracy_result(
                    [scores[i.id] for i in dataset.items if i.id in scores], model, abbr,
                    n_failed=len(dataset.items) - len(scores), generated=generated,
                )
            if dataset.task.spec.breakdown:
                result = replace(result, extra_metrics={**result.extra_metrics, **_breakdown(dataset, scores)})
            if withheld := _withheld_share(scores):
                result = replace(result, extra_metrics={**result.extra_metrics, **withheld})
            if judged := _judge_metrics(scores):
                result = replace(result, extra_metrics={**result.extra_metrics, **judged})
            write_json_atomic(run.result(model, abbr), result.to_json())
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


def dataset_version(dataset: PreparedDataset, judge: Any) -> str:
    """The version column: the prompt's hash, plus the judge's (`+j3f2a`) for a judged dataset."""
    from proctor.engine.judging import judge_tag
    from proctor.scoring import get_scorer, judge_scorer

    scorer = get_scorer(dataset.task.scorer, dataset.task.scorer_params)
    return f"{dataset.version}+j{judge_tag(judge, scorer)}" if judge_scorer(scorer) else dataset.version


def write_reports(
    run: RunDir,
    model_names: Sequence[str],
    prepared: Sequence[PreparedDataset],
    results: Sequence[Result],
    *,
    console: Any,
    judge: Any = None,
) -> Any:
    from proctor.tasks.groups import summary_groups
    from proctor.report import DatasetRowInfo, build_summary, print_summary, write_html_report, write_summary

    rows = [DatasetRowInfo(p.config.abbr, dataset_version(p, judge), p.config.mode) for p in prepared]
    groups = summary_groups([(p.config, p.task) for p in prepared])
    summary = build_summary(results, rows, groups, list(model_names))
    write_summary(summary, run.summary_dir)
    print_summary(summary, console=console)
    write_html_report(run.root, summary)
    return summary
