"""Repeated sampling (`--repeats K`): items, seeds, cache keys, avg@K / pass@K / maj@K, old `#n` records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from proctor.core import Item, Record, Request, Sample, Score
from proctor.metrics import majority, repeats_result
from proctor.prompts import current_item_id, items_of


def _se(values: list[float]) -> float:
    """Standard error of a mean, in percent, written out here (not the code under test)."""
    n = len(values)
    mean = sum(values) / n
    return 100.0 * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def test_repeat_items_are_marked_k_and_carry_their_index() -> None:
    sample = Sample(id="7", question="q", target="1")
    items = items_of(sample, repeats=3)
    assert [i.id for i in items] == ["7#k0", "7#k1", "7#k2"]
    assert [i.variant["repeat"] for i in items] == [0, 1, 2]
    assert [i.id for i in items_of(sample)] == ["7"]  # one repeat keeps the sample id
    mc = Sample(id="q", question="?", target="A", choices=("x", "y"))
    assert [i.id for i in items_of(mc, "circular", 2)] == ["q#r0#k0", "q#r0#k1", "q#r1#k0", "q#r1#k1"]


def test_older_repeat_ids_read_as_todays() -> None:
    assert current_item_id("7#n2", "7") == "7#k2"
    assert current_item_id("q#r1#n0", "q") == "q#r1#k0"
    assert current_item_id("7#k2", "7") == "7#k2"
    # A sample whose own id holds "#n" is not a repeat; without a sample id nothing is guessed.
    assert current_item_id("a#n1", "a#n1") == "a#n1"
    assert current_item_id("a#n1", "") == "a#n1"
    assert current_item_id("a#rx#n1", "a") == "a#rx#n1"


def test_a_predictions_file_of_an_older_run_is_read_under_todays_ids(tmp_path: Path) -> None:
    from proctor.engine.store import PredictionStore

    path = tmp_path / "p.jsonl"
    lines = [Record(item_id=f"HumanEval/0#n{j}", sample_id="HumanEval/0", prompt="p", output=f"o{j}",
                    loglikelihoods=None).to_json() for j in range(2)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    records = PredictionStore(path).load()
    assert sorted(records) == ["HumanEval/0#k0", "HumanEval/0#k1"]
    assert records["HumanEval/0#k1"].output == "o1" and records["HumanEval/0#k1"].item_id == "HumanEval/0#k1"


def test_a_seed_is_in_the_payload_and_the_cache_key_only_when_set() -> None:
    base = Request(kind="generate", prompt="p", temperature=0.7)
    assert "seed" not in base.payload() and not base.deterministic  # unseeded sampling: never cached
    seeded = [Request(kind="generate", prompt="p", temperature=0.7, seed=j) for j in range(3)]
    assert [r.payload()["seed"] for r in seeded] == [0, 1, 2]
    assert all(r.deterministic for r in seeded)  # cached, each under its own key
    assert len({r.key("m") for r in seeded} | {base.key("m")}) == 4


def test_the_api_body_carries_the_seed() -> None:
    from proctor.models.api_payloads import plan_request

    _, body, _ = plan_request(Request(kind="generate", prompt="p", temperature=0.6, seed=5), model="m", chat=True,
                              display_base="x")
    assert body["seed"] == 5
    _, body, _ = plan_request(Request(kind="generate", prompt="p"), model="m", chat=True, display_base="x")
    assert "seed" not in body


def test_majority_vote_ties_go_to_the_first_answer_given() -> None:
    def s(answer: object, value: float = 0.0) -> Score:
        return Score(value, answer=answer)

    assert majority([s("3"), s("5", 1.0), s("5", 1.0), s("3")]).answer == "3"  # 2-2: "3" came first
    assert majority([s(None), s("5", 1.0), s("4"), s("5", 1.0)]).value == 1.0
    assert majority([s(None), s(None)]) is None  # no extracted answer: no vote
    assert majority([s(7.0), s("7"), s(8)]).answer == 7.0  # 7.0 and "7" are one vote
    # Answers the scorer judged right are one vote whatever their form; wrong ones by their number.
    assert majority([s("24"), s("24"), s("\\frac{50}{2}", 1.0), s("25", 1.0), s("025", 1.0)]).value == 1.0
    assert majority([s("24"), s("24.0"), s("48/2"), s("25", 1.0), s("25", 1.0)]).value == 0.0
    assert majority([s("x  y"), s("x y"), s("z", 1.0)]).answer == "x  y"


def _scored(table: dict[str, list[tuple[float, object]]]) -> tuple[list[Item], dict[str, Score]]:
    items: list[Item] = []
    scores: dict[str, Score] = {}
    for sid, answers in table.items():
        sample = Sample(id=sid, question="q", target="t")
        for item, entry in zip(items_of(sample, repeats=len(answers)), answers):
            items.append(item)
            if entry is not None:
                value, answer = entry
                scores[item.id] = Score(value, answer=answer)
    return items, scores


def test_avg_pass_maj_at_k_with_standard_errors_across_questions() -> None:
    items, scores = _scored({
        "a": [(1.0, "5"), (0.0, "4"), (0.0, "4"), (1.0, "5")],  # maj: tie 5/4, "5" first: right
        "b": [(0.0, "2"), (0.0, "2"), (1.0, "9"), (0.0, None)],  # maj: "2": wrong; pass: right
        "c": [(0.0, None)] * 4,  # all truncated: no vote
        "d": [(1.0, "1")] * 4,
        "e": [(1.0, "1"), None, (1.0, "1"), (1.0, "1")],  # a failed repeat: not scored
    })
    result = repeats_result(items, scores, "m", "aime2024", generated=True)
    per_q_avg, per_q_pass, per_q_maj = [0.5, 0.25, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]
    assert (result.metric, result.n, result.n_failed) == ("avg@4", 4, 1)
    assert result.value == pytest.approx(100 * sum(per_q_avg) / 4)
    assert result.stderr == pytest.approx(_se(per_q_avg))
    assert result.extra_metrics["pass@4"] == pytest.approx(75.0)
    assert result.extra_stderrs["pass@4"] == pytest.approx(_se(per_q_pass))
    assert result.extra_metrics["maj@4"] == pytest.approx(50.0)
    assert result.extra_stderrs["maj@4"] == pytest.approx(_se(per_q_maj))
    assert result.extra_metrics["extraction_rate"] == pytest.approx(100 * 11 / 16)
    data = result.to_json()
    assert data["extra_stderrs"]["maj@4"] == pytest.approx(_se(per_q_maj))
    assert "extra_stderrs" not in repeats_result(items, {}, "m", "x").to_json()  # no value: none


def test_repeats_and_its_older_name_num_samples_in_configs() -> None:
    from pydantic import ValidationError

    from proctor.config.schema import DatasetConfig
    from proctor.tasks import resolve_datasets

    (old,) = resolve_datasets(["gsm8k"], num_samples=3)
    (new,) = resolve_datasets(["gsm8k"], repeats=3)
    assert old == new and new.repeats == 3
    assert DatasetConfig(abbr="x", benchmark="gsm8k", num_samples=2).repeats == 2  # an old run's config.json
    with pytest.raises(ValidationError, match="disagree"):
        DatasetConfig(abbr="x", benchmark="gsm8k", repeats=2, num_samples=3)


def test_a_group_of_avg_at_k_results_weighs_its_members_errors() -> None:
    from proctor.core import Result
    from proctor.metrics import group_results

    one = Result("m", "aime2025-I", "avg@4", 50.0, 10.0, 15)
    two = Result("m", "aime2025-II", "avg@4", 30.0, 8.0, 15)
    subjects, questions = group_results("aime2025", [one, two])
    assert questions.metric == "avg@4 (mean of questions)" and questions.value == pytest.approx(40.0)
    assert questions.stderr == pytest.approx(math.sqrt((0.5 * 10.0) ** 2 + (0.5 * 8.0) ** 2))
    assert subjects.stderr == pytest.approx(math.sqrt(10.0**2 + 8.0**2) / 2)
    # Right/wrong accuracy keeps the pooled proportion's error.
    acc = group_results("g", [Result("m", "a", "accuracy", 50.0, 0.0, 10), Result("m", "b", "accuracy", 50.0, 0.0, 10)])
    assert acc[1].stderr == pytest.approx(100 * math.sqrt(0.25 / 19))


def test_repeats_in_a_config_entry_and_proctor_list_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proctor.cli import main
    from proctor.config.files import load_config_file

    path = tmp_path / "eval.yaml"
    path.write_text("models: [{api_base: 'http://127.0.0.1:1/v1'}]\n"
                    "datasets: [{name: aime2024, repeats: 8}, {name: amc23, num_samples: 2}, gsm8k]\n", encoding="utf-8")
    loaded = load_config_file(path)
    assert [(d.abbr, d.repeats) for d in loaded.datasets] == [("aime2024", 8), ("amc23", 2), ("gsm8k", None)]
    assert main(["list", "datasets"]) == 0
    rows = {line.split("\t")[0]: line.split("\t")[3] for line in capsys.readouterr().out.splitlines() if "\t" in line}
    assert rows["aime2024"].startswith("AIME 2024: 30 ") and rows["amc23"].startswith("AMC 2023: 40 ")
    assert rows["aime2025"].startswith("AIME 2025: 30 ") and rows["gpqa_diamond"].startswith("GPQA Diamond: 198 ")


def test_circular_evaluation_and_repeats_are_refused_together() -> None:
    from proctor.errors import ConfigError
    from proctor.tasks import resolve_datasets

    with pytest.raises(ConfigError, match="circular evaluation and --repeats 4 cannot be combined"):
        resolve_datasets(["gpqa_diamond"], circular=True, repeats=4)
    assert resolve_datasets(["gpqa_diamond_circular"], repeats=1)[0].variants == "circular"
