"""AGIEval, GAOKAO-Bench (objective) and PIQA end to end on their real rows.

A scripted model (the real OpenAI-compatible test server) answers each question in a way this
test decides — right, wrong, a partial set, a reordered set, another wording — and the expected
scores are worked out here from those decisions and the benchmarks' own rules, never asked of
the scorers. PIQA's log-likelihood variant runs on the tiny local model; its accuracy is
checked against the labels file read here, on the log-likelihoods the model returned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import only_run, read_records, read_result
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Sample
from proctor.tasks import load_samples

pytestmark = needs_shared_data

AGIEVAL_SIZES = {"aqua-rat": 254, "gaokao-biology": 210, "gaokao-chemistry": 207, "gaokao-chinese": 246,
                 "gaokao-english": 306, "gaokao-geography": 199, "gaokao-history": 235, "gaokao-mathcloze": 118,
                 "gaokao-mathqa": 351, "gaokao-physics": 200, "jec-qa-ca": 1000, "jec-qa-kd": 999, "logiqa-en": 651,
                 "logiqa-zh": 651, "lsat-ar": 230, "lsat-lr": 510, "lsat-rc": 269, "math": 1000, "sat-en": 206,
                 "sat-en-without-passage": 206, "sat-math": 220}
GAOKAO_SIZES = [105, 150, 124, 56, 29, 30, 124, 34, 287, 218, 214, 64, 320, 26]  # `ls` order (the data README)


def test_sizes_match_the_data_readme() -> None:
    from proctor.tasks import get_spec

    assert {s: len(load_samples("agieval", s, "test", str(SHARED_DATASETS))) for s in AGIEVAL_SIZES} == AGIEVAL_SIZES
    gaokao = sorted(get_spec("gaokao").subset_names)
    assert [len(load_samples("gaokao", s, "test", str(SHARED_DATASETS))) for s in gaokao] == GAOKAO_SIZES
    piqa = load_samples("piqa", "", "valid", str(SHARED_DATASETS))
    labels = (SHARED_DATASETS / "piqa/piqa/data/valid-labels.lst").read_text().split()
    assert len(piqa) == 1838 and [s.target for s in piqa] == ["AB"[int(x)] for x in labels]


def _find(samples: dict[str, list[Sample]], prompt: str) -> tuple[str, int, Sample]:
    for task, rows in samples.items():
        for i, s in enumerate(rows):
            if s.question.strip() in prompt:
                return task, i, s
    raise AssertionError(f"no sample in prompt {prompt[:80]!r}")


# ---------------------------------------------------------------- AGIEval

AGI_TASKS = ["lsat-ar", "gaokao-mathqa", "gaokao-physics", "jec-qa-ca", "gaokao-mathcloze", "math"]
AGI_LIMIT = 9


def _agi_reply(task: str, i: int, s: Sample) -> tuple[str, bool]:
    """The scripted answer to question i of a task, and whether it is right by OpenCompass's rules."""
    gold = str(s.target)
    if task in ("gaokao-mathcloze", "math"):
        if i % 3 == 0:
            return "The answer is 987654321.", False
        return (f"答案是：{gold}" if task == "gaokao-mathcloze" else f"So the result is $\\boxed{{{gold}}}$."), True
    if task == "lsat-ar":
        other = "ABCDE"[("ABCDE".index(gold) + 1) % 5]
        return (f"The answer is ({other})." if i % 3 == 0 else f"The answer is ({gold})."), i % 3 != 0
    # multiple answers compared as sets
    if i % 3 == 0:
        wrong = gold[:-1] if len(gold) > 1 else ("B" if gold != "B" else "C")
        return f"答案是：{wrong}", False
    reordered = gold[::-1]
    return (f"答案是：{'、'.join(reordered)}" if i % 3 == 1 else reordered), True


def test_agieval_end_to_end(tmp_path: Path) -> None:
    samples = {t: load_samples("agieval", t, "test", str(SHARED_DATASETS))[:AGI_LIMIT] for t in AGI_TASKS}
    expected = {t: 100.0 * sum(_agi_reply(t, i, s)[1] for i, s in enumerate(rows)) / len(rows)
                for t, rows in samples.items()}

    def respond(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        task, i, s = _find(samples, prompt)
        # the prompt of OpenCompass's agieval_gen: the hint ends it
        assert prompt.endswith("答案是： " if task.startswith(("gaokao", "jec")) else "The answer is ")
        return _agi_reply(task, i, s)[0]

    with OpenAIServer(respond, model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "--datasets", *[f"agieval-{t}" for t in AGI_TASKS],
                     "--limit", str(AGI_LIMIT), "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path)])
    assert code == 0
    run = only_run(tmp_path)
    got = {t: read_result(run, "m", f"agieval-{t}")["value"] for t in AGI_TASKS}
    assert got == pytest.approx(expected)
    assert 0 < got["gaokao-physics"] < 100 and 0 < got["math"] < 100
    summary = (run / "summary" / "summary.txt").read_text(encoding="utf-8")
    assert "agieval-chinese" in summary and "agieval-english" in summary


# ---------------------------------------------------------------- GAOKAO-Bench

GAOKAO_FILES = ["2010-2022_Math_I_MCQs", "2010-2022_Physics_MCQs", "2010-2022_Chinese_Modern_Lit",
                "2012-2022_English_Cloze_Test"]
GAOKAO_LIMIT = 6


def _gaokao_reply(task: str, i: int, s: Sample) -> tuple[str, float, int]:
    """(reply, credit, sub-questions) by GAOKAO-Bench's rules for question i of a file."""
    gold: list[str] = list(s.target)
    if task == "2010-2022_Math_I_MCQs":  # single_choice: the last A-D letter of the reply
        other = "ABCD"[("ABCD".index(gold[0]) + 1) % 4]
        letter = gold[0] if i % 2 else other
        return f"【解析】 略 <eoe>\n【答案】: {letter} <eoa>", float(letter == gold[0]), 1
    if task == "2010-2022_Physics_MCQs":  # multi_choice: 6 / 3 / 0 points
        g = gold[0]
        if i % 3 == 0:
            return f"【解析】 ... <eoe>\n【答案】 {g} <eoa>", 1.0, 1
        if i % 3 == 1:
            return f"【解析】 ... <eoe>\n【答案】 {g[0]} <eoa>", (1.0 if len(g) == 1 else 0.5), 1
        wrong = next(c for c in "DCBA" if c not in g)
        return f"【解析】 ... <eoe>\n【答案】 {wrong}{g} <eoa>", 0.0, 1
    if task == "2010-2022_Chinese_Modern_Lit":  # multi_question_choice: one 【答案】 per sub-question
        letters = list(gold)
        if i % 2:
            letters[0] = "ABCD"[("ABCD".index(letters[0]) + 1) % 4]
        reply = "\n".join(f"（{k + 1}）【答案】 {letter} <eoa>" for k, letter in enumerate(letters))
        return reply, float(sum(a == b for a, b in zip(letters, gold))), len(gold)
    # five_out_of_seven: the first five letters A-G
    return f"【答案】 {' '.join(gold)} <eoa>", float(len(gold)), len(gold)


def test_gaokao_end_to_end(tmp_path: Path) -> None:
    prompts = {e["keyword"]: e["prefix_prompt"] for e in json.loads(
        (SHARED_DATASETS / "gaokao_bench/Bench/Obj_Prompt.json").read_text(encoding="utf-8"))["examples"]}
    samples = {t: load_samples("gaokao", t, "test", str(SHARED_DATASETS))[:GAOKAO_LIMIT] for t in GAOKAO_FILES}
    expected = {}
    for t, rows in samples.items():
        replies = [_gaokao_reply(t, i, s) for i, s in enumerate(rows)]
        expected[t] = 100.0 * sum(c for _, c, _ in replies) / sum(n for _, _, n in replies)

    def respond(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        task, i, s = _find(samples, prompt)
        assert prompt == prompts[task] + s.question.strip() + "\n"  # the benchmark's own prompt
        return _gaokao_reply(task, i, s)[0]

    with OpenAIServer(respond, model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "--datasets", *[f"gaokao-{t}" for t in GAOKAO_FILES],
                     "--limit", str(GAOKAO_LIMIT), "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path)])
    assert code == 0
    run = only_run(tmp_path)
    got = {t: read_result(run, "m", f"gaokao-{t}") for t in GAOKAO_FILES}
    assert {t: r["value"] for t, r in got.items()} == pytest.approx(expected)
    assert {r["metric"] for r in got.values()} == {"weighted_accuracy"}
    assert expected["2010-2022_Chinese_Modern_Lit"] == pytest.approx(100 * 15 / 18)  # 3 of 6 miss one of 3


# ---------------------------------------------------------------- PIQA


def test_piqa_generation(tmp_path: Path) -> None:
    rows = load_samples("piqa", "", "valid", str(SHARED_DATASETS))[:12]

    def respond(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        i, s = next((i, s) for i, s in enumerate(rows) if prompt.startswith(s.question + "\nA. "))
        assert prompt == f"{s.question}\nA. {s.choices[0].strip()}\nB. {s.choices[1].strip()}\nAnswer:"
        return f"Answer: {s.target if i % 4 else 'AB'[1 - 'AB'.index(s.target)]}"

    with OpenAIServer(respond, model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "--datasets", "piqa", "--limit", "12",
                     "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path)])
    assert code == 0
    assert read_result(only_run(tmp_path), "m", "piqa")["value"] == pytest.approx(100 * 9 / 12)


def test_piqa_loglikelihood_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    code = main(["run", "--hf-path", str(tiny_model_dir), "--datasets", "piqa_ppl", "--limit", "16",
                 "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path)])
    assert code == 0
    run = only_run(tmp_path)
    (model,) = [p.name for p in (run / "results").iterdir()]
    labels = [int(x) for x in (SHARED_DATASETS / "piqa/piqa/data/valid-labels.lst").read_text().split()][:16]
    goals = [json.loads(line)["goal"] for line in
             (SHARED_DATASETS / "piqa/piqa/data/valid.jsonl").read_text(encoding="utf-8").splitlines()[:16]]
    records = sorted(read_records(run, model, "piqa_ppl_options"), key=lambda r: int(r["item_id"]))
    right = right_norm = 0
    for record, label, goal in zip(records, labels, goals):
        prompt = record["prompt"]
        assert prompt["context"] == f"Question: {goal}\nAnswer:"  # lm-evaluation-harness's piqa prompt
        lls = record["loglikelihoods"]
        right += lls.index(max(lls)) == label
        per_byte = [ll / len(c.encode()) for ll, c in zip(lls, prompt["continuations"])]
        right_norm += per_byte.index(max(per_byte)) == label
    result = read_result(run, model, "piqa_ppl_options")
    assert result["n"] == 16
    assert result["value"] == pytest.approx(100 * right / 16)
    assert result["extra_metrics"]["acc_norm"] == pytest.approx(100 * right_norm / 16)
