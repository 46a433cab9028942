"""`proctor compare A B --judge-api-base URL`: is B's answer better than A's, question by question,
as a judge sees it? Every question both answered (the same prompt, an answer on both sides) is
judged twice with Arena-Hard's judge prompt (A as assistant A, then as assistant B), by the
protocol of `pairwise_judge`: strong verdicts count 3 battles, ties half, a question with an
unparsed game left out. The number is B's win rate over A (50 = no difference) with a bootstrap
95% interval; the judge's replies are records under `<out>/judgements/compare/`, so a killed
comparison resumes without asking a judged pair again (and the response cache is used).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from proctor.core import Item, Record, Sample, path_part
from proctor.engine.store import PredictionStore
from proctor.engine.task import has_answer, run_task
from proctor.errors import ConfigError
from proctor.reasoning import split_record

# The judge prompt: Arena-Hard v0.1's (its config file in the data folder, its system prompt in the spec).
CONFIG_LAYOUT = "arena_hard/config/arena-hard-v0.1.yaml"


def _judge_prompt(data_dir: str | None) -> tuple[str, list[str], str]:
    """(user template, verdict patterns, system prompt) of Arena-Hard v0.1."""
    import yaml

    from proctor.datasets import DataSource, SourceSpec
    from proctor.datasets.locate import find_file
    from proctor.tasks.load import builtin_specs

    source = DataSource("arena_hard", "Arena-Hard", SourceSpec(layouts=(CONFIG_LAYOUT,)), ("",), ("test",))
    path = find_file(source, "", "test", data_dir)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    system = builtin_specs()["arena_hard"].scorer.params["system_prompt"]
    return config["prompt_template"], list(config["regex_patterns"]), system


def _question(record: Record) -> str | None:
    prompt = record.prompt
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        return str(users[-1]) if users else None
    return None


def _answer(record: Record | None) -> str | None:
    if not has_answer(record):
        return None
    assert record is not None
    split = split_record(record)
    return split.answer if split.status == "answered" else None


def _datasets(run: Path, model: str) -> set[str]:
    return {p.stem for p in (run / "predictions" / path_part(model)).glob("*.jsonl")}


def pair_items(a: Mapping[str, Record], b: Mapping[str, Record], fields: Mapping[str, Any]
               ) -> tuple[list[Item], dict[str, Record], int]:
    """(the judged items, B's answer records, questions skipped: not answered on both sides or
    asked with another prompt), in item-id order (never completion order)."""
    items: list[Item] = []
    records: dict[str, Record] = {}
    skipped = 0
    for item_id in sorted(set(a) | set(b)):
        ra, rb = a.get(item_id), b.get(item_id)
        qa, qb = (_question(ra) if ra else None), (_question(rb) if rb else None)
        answer_a, answer_b = _answer(ra), _answer(rb)
        if answer_a is None or answer_b is None or qa is None or qa != qb:
            skipped += 1
            continue
        assert rb is not None
        sample = Sample(id=item_id, question=qa, target=None, fields={"baseline": answer_a, **fields})
        items.append(Item(id=item_id, sample=sample, sample_id=rb.sample_id or item_id))
        records[item_id] = replace(rb, output=answer_b)
    return items, records, skipped


async def judge_compare(a_run: Path, b_run: Path, pairs: Sequence[tuple[str, str]], judge: Any, out: Path, *,
                        data_dir: str | None = None, datasets: Sequence[str] = (), cache: bool = True
                        ) -> list[dict[str, Any]]:
    """B against A on every dataset both hold, judged; one row per (pair, dataset)."""
    from proctor.engine.cache import open_cache
    from proctor.metrics.judged import arena_hard_result
    from proctor.models import create_backend
    from proctor.scoring import get_scorer

    template, patterns, system = _judge_prompt(data_dir)
    scorer: Any = get_scorer("pairwise_judge", {"protocol": "arena_hard", "system_prompt": system})
    fields = {"judge_template": template, "judge_patterns": patterns}
    from proctor.engine.judging import game_verdicts, judge_tag

    tag = judge_tag(judge, scorer, json.dumps([template, patterns, system]))
    response_cache = open_cache() if cache else None
    backend = create_backend(judge)
    await backend.start()
    rows: list[dict[str, Any]] = []
    try:
        for model_a, model_b in pairs:
            common = sorted(_datasets(a_run, model_a) & _datasets(b_run, model_b))
            if datasets:
                unknown = [d for d in datasets if d not in common]
                if unknown:
                    raise ConfigError(f"--datasets: {unknown[0]} has predictions of {model_a} in {a_run.name} and "
                                      f"{model_b} in {b_run.name}: no (both have: {', '.join(common) or 'none'})")
                common = [d for d in common if d in datasets]
            for dataset in common:
                a = PredictionStore(a_run / "predictions" / path_part(model_a) / f"{dataset}.jsonl").load(repair=False)
                b = PredictionStore(b_run / "predictions" / path_part(model_b) / f"{dataset}.jsonl").load(repair=False)
                items, records, skipped = pair_items(a, b, fields)
                if not items:
                    continue
                games = {item.id: scorer.games(item, records) for item in items}
                asked = [(Item(id=f"{item.id}@{g.name}", sample=item.sample, sample_id=item.sample_id), g.request)
                         for item in items for g in games[item.id]]
                where = out / "judgements" / "compare" / f"{path_part(model_a)}__vs__{path_part(model_b)}"
                store = PredictionStore(where / f"{dataset}.j{tag}.jsonl")  # one file per judge
                markers = getattr(judge, "reasoning_markers", None)
                try:
                    # run_id: a judge whose server names no checkpoint keeps its cached verdicts to
                    # this comparison (its folder), as a run's own judge keeps them to the run.
                    await run_task(backend, asked, store, store.load(), response_cache, lambda record: None,
                                   run_id=f"compare:{out.resolve()}",
                                   markers=markers() if markers is not None else None)
                finally:
                    store.close()
                replies = store.load()
                scores, _ = game_verdicts(scorer, items, records, games, replies)
                result = arena_hard_result(items, scores, model_b, dataset)
                rows.append({"a": model_a, "b": model_b, "dataset": dataset, "n": result.n,
                             "b_win_rate": result.value, "ci95_low": result.extra_metrics.get("ci95_low"),
                             "ci95_high": result.extra_metrics.get("ci95_high"),
                             "judge_unparsed": result.extra_metrics.get("judge_unparsed", 0.0),
                             "judge_failed": result.n_failed, "skipped": skipped})
    finally:
        await backend.close()
        if response_cache is not None:
            response_cache.close()
    return rows


def format_judged(rows: Sequence[Mapping[str, Any]], judge_name: str) -> str:
    """The comparison as text: one line per (pair, dataset)."""
    lines = [f"judged by {judge_name}, both orders (Arena-Hard's prompt): B's win rate over A, 95% bootstrap interval"]
    for row in rows:
        interval = f"[{row['ci95_low']:.1f}, {row['ci95_high']:.1f}]" if row["n"] else "[-]"
        lines.append(f"{row['dataset']}: {row['b']} vs {row['a']}: {row['b_win_rate']:.1f} {interval} "
                     f"(n={row['n']}, unparsed {row['judge_unparsed']:.1f}%, skipped {row['skipped']})")
    if not rows:
        lines.append("no dataset has answers of both models to judge")
    return "\n".join(lines) + "\n"


def write_judged(rows: Sequence[Mapping[str, Any]], out: Path, judge_info: Mapping[str, Any]) -> Path:
    from proctor.engine.diskio import write_json_atomic

    path = out / "compare_judged.json"
    write_json_atomic(path, {"judge": dict(judge_info), "rows": [dict(r) for r in rows]})
    return path


__all__ = ["format_judged", "judge_compare", "pair_items", "write_judged"]
