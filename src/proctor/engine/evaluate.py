"""The eval and report stages: score the records on disk, write scores, results, the summary and report."""

from __future__ import annotations

import json
import logging
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
from proctor.reasoning import split_record

log = logging.getLogger("proctor.engine")


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
    # An answer the server filtered or the model refused is what it is, not an answer to read;
    # a thought that never ended (or ended with nothing after it) has no answer to read either.
    unread: dict[str, Score] = {}
    to_score: list[Item] = []
    answers: dict[str, Record] = {}
    for item in answered:
        record = records[item.id]
        if record.finish_reason in WITHHELD:
            unread[item.id] = _withheld(record.finish_reason or "")
            continue
        answer = answer_record(record)
        if isinstance(answer, Score):
            unread[item.id] = answer
        else:
            answers[item.id] = answer
            to_score.append(item)
    if judge_scorer(scorer):
        if judge is None:
            raise ConfigError(f"dataset {dataset.config.abbr} is scored by a judge; give the judge model")
        return {**unread, **await judge.score(model, dataset, scorer, answers, to_score)}
    scores = score_records(scorer, [(item.sample, answers[item.id]) for item in to_score])
    return {**unread, **{item.id: score for item, score in zip(to_score, scores)}}


# Scores of outputs with no answer to read (proctor.reasoning): scored 0, never shown to a scorer.
UNANSWERED = {
    "truncated": "the reasoning never ended (cut off by the answer budget): no answer to read",
    "no_answer": "nothing followed the reasoning: no answer",
}


def answer_record(record: Record) -> Record | Score:
    """The record a scorer sees (its `output` only the answer part), or the Score of an output
    with no answer (`truncated`, `no_answer`). Log-likelihood records pass as they are."""
    if record.output is None and record.reasoning is None:
        return record
    split = split_record(record)
    if split.status != "answered":
        return Score(0.0, answer=None, rule=split.status, explanation=UNANSWERED[split.status])
    if split.answer == record.output and split.reasoning is None:
        return record
    # The thought goes with the answer: a scorer that splits again (ifeval drops the blank line
    # after a thought) must still see that there was one in a record stored unsplit.
    return replace(record, output=split.answer, reasoning=split.reasoning)


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


def _with_budget_counts(
    result: Result, dataset: PreparedDataset, records: dict[str, Record], scores: dict[str, Score]
) -> Result:
    """`truncated` (items whose thought was cut off: no answer) and `length` (answers read from
    a reply that the token limit ended) as counts, the `truncated` share of the scored items as
    a summary row beside extraction_rate, and the mean completion and reasoning tokens."""
    scored = [(records[i.id], scores[i.id]) for i in dataset.items if i.id in scores and i.id in records]
    truncated = sum(1 for _, s in scored if s.rule == "truncated")
    length = sum(1 for r, s in scored if s.rule != "truncated" and r.finish_reason == "length")
    extra = dict(result.extra_metrics)
    if scored:
        extra["truncated"] = 100.0 * truncated / len(scored)
    completion = [r.completion_tokens for r, _ in scored if r.completion_tokens is not None]
    reasoning = [r.reasoning_tokens for r, _ in scored if r.reasoning_tokens is not None]
    if reasoning and completion:
        # A reasoning model: what a score cost, as summary rows too (mean tokens per reply).
        extra["completion_tokens"] = sum(completion) / len(completion)
        extra["reasoning_tokens"] = sum(reasoning) / len(reasoning)
    return replace(
        result, extra_metrics=extra, truncated=truncated, length=length,
        mean_completion_tokens=sum(completion) / len(completion) if completion else None,
        mean_reasoning_tokens=sum(reasoning) / len(reasoning) if reasoning else None,
    )


def _say_truncated(run: RunDir, model: str, dataset: str, result: Result, replies: int) -> None:
    """Cut-off thoughts are the model's failure, not a failed request: the run goes on and its
    log (and console) says which setting gives the model room. `replies`: the scored items (with
    --repeats K, K per question: `result.n` counts questions)."""
    if not result.truncated:
        return
    line = (f"{model} on {dataset}: {result.truncated} of {replies} replies were cut off inside their reasoning "
            "and scored 0 (truncated); raise the answer budget with --max-out-len (max_out_len in the model or "
            "dataset config) in a new run (-r keeps the replies it has)")
    log.warning("%s", line)
    path = run.log(model, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


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


def _fewshot_dropped(dataset: PreparedDataset, records: Any) -> dict[str, float]:
    """`fewshot_dropped_rate`: the share (%) of answered items whose prompt dropped few-shot
    examples to fit the context; absent when none did."""
    answered = [records[i.id] for i in dataset.items if i.id in records and not records[i.id].failed]
    cut = sum(1 for r in answered if r.fewshot_dropped)
    return {"fewshot_dropped_rate": 100.0 * cut / len(answered)} if cut else {}


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
    from proctor.metrics import circular_result, get_metric, repeats_result

    results = []
    for model in model_names:
        for dataset in prepared:
            abbr = dataset.config.abbr
            records = PredictionStore(run.predictions(model, abbr)).load()
            scores = await score_dataset(records, dataset, model, session)
            lines = [_score_line(i, records.get(i.id), scores.get(i.id)) for i in dataset.items]
            write_text_atomic(run.scores(model, abbr), "".join(line + "\n" for line in lines))
            generated = dataset.task.kind == "generate"
            headline = get_metric((dataset.task.spec.metrics or ("accuracy",))[0])
            if dataset.task.variants != "none":
                result = circular_result(dataset.items, scores, model, abbr, generated=generated)
            elif dataset.task.repeats > 1 and not headline.repeats:
                result = repeats_result(dataset.items, scores, model, abbr, generated=generated)
            else:  # the spec's first metric, from the registry (pass@k reads the repeats itself)
                result = headline.aggregate(dataset.items, scores, model, abbr, generated=generated)
            if dataset.task.spec.breakdown:
                result = replace(result, extra_metrics={**result.extra_metrics, **_breakdown(dataset, scores)})
            if dropped := _fewshot_dropped(dataset, records):
                result = replace(result, extra_metrics={**result.extra_metrics, **dropped})
            if withheld := _withheld_share(scores):
                result = replace(result, extra_metrics={**result.extra_metrics, **withheld})
            if generated:
                result = _with_budget_counts(result, dataset, records, scores)
                _say_truncated(run, model, abbr, result, sum(1 for i in dataset.items if i.id in scores))
            if judged := _judge_metrics(scores):
                result = replace(result, extra_metrics={**result.extra_metrics, **judged})
            if cost := session.costs.get((model, abbr)):
                result = replace(result, extra_metrics={**result.extra_metrics, **cost})
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

    from proctor.scoring.judged import games_judge, prompt_digest

    scorer = get_scorer(dataset.task.scorer, dataset.task.scorer_params)
    if not judge_scorer(scorer):
        return dataset.version
    prompts = prompt_digest(scorer, dataset.samples) if games_judge(scorer) else ""
    return f"{dataset.version}+j{judge_tag(judge, scorer, prompts)}"


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
    from proctor.report import DatasetRowInfo, build_summary, write_html_report, write_summary
    from proctor.report.console import print_headline

    rows = [DatasetRowInfo(p.config.abbr, dataset_version(p, judge), p.config.mode) for p in prepared]
    groups = summary_groups([(p.config, p.task) for p in prepared])
    summary = build_summary(results, rows, groups, list(model_names))
    write_summary(summary, run.summary_dir)
    # The headline on the console; every subset and metric stays in summary/ and report.html.
    coverage = {p.config.abbr: (len(p.samples), p.available or len(p.samples)) for p in prepared}
    print_headline(summary, results, coverage, console=console, full_tables=run.summary_dir)
    write_html_report(run.root, summary)
    return summary
