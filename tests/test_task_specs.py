"""Task spec files: validation errors that name the file and key, and a new benchmark as one spec file.

The end-to-end test writes a small three-subset multiple-choice benchmark (data files plus
one YAML spec) to tmp_path and runs `proctor run --datasets <spec>.yaml` against the real
OpenAI-compatible test server: nothing else is registered or changed.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, default_logprob_fn, last_user_message
from run_helpers import only_run, read_records, read_result
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.errors import ConfigError
from proctor.tasks import builtin_specs, load_spec_file, resolve_datasets

MINIMAL = "name: mybench\nsource: {layouts: [data.jsonl]}\n"


def spec_error(tmp_path: Path, text: str, name: str = "mybench.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_spec_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("prompt: {fewshot: -1}", "prompt.fewshot: Input should be greater than or equal to 0"),
        ("prompt: {format: html}", "prompt.format: Input should be 'auto', 'chat' or 'text'"),
        ("promt: {fewshot: 1}", "promt: unknown key; did you mean: prompt?"),
        ("prompt: {texts: {en: {instuction: x}}}", "prompt.texts.en.instuction: unknown key; did you mean: instruction?"),
        ("fields: {answer_format: number}", "fields.answer_format: Input should be 'auto', 'label', 'letter', 'index', 'index1' or 'text'"),
        ("fields: {qestion: q}", "fields.qestion: unknown key; did you mean: question, question_file?"),
        ("subsets: [{name: a, titel: A}]", "subsets.0.titel: unknown key; did you mean: title, title_zh?"),
        ("subsets: [{name: a}, {name: bb}]\ngroups: [{name: g, subsets: [a, b]}]",
         "groups.0.subsets: group 'g' names unknown subset 'b'; did you mean: bb?"),
        ("subsets: [{name: a}, {name: a}]", "subsets.1.name: subset 'a' is listed twice"),
        ("categories: [STEM]\nsubsets: [{name: a, categories: [Arts]}]",
         "subsets.0.categories: 'Arts' is not one of `categories` ['STEM']"),
        ("splits: {eval: val, available: [dev, test]}", "splits: eval/fewshot not among splits.available ['dev', 'test']"),
        ("prompt: {preset: free_form}\nmodes: [gen, ppl]",
         "modes: a free-form benchmark has no options: ppl mode and circular variants need multiple choice"),
        ("request: {kind: loglikelihood}", "request.kind: loglikelihood needs `ppl` among `modes`"),
        ("scorer: {name: exactt}", "scorer: unknown scorer 'exactt'; did you mean: exact?; known scorers: agieval_cloze, bbh, cascade, choice, choice_set, code_exec, exact, gaokao, ifeval, llm_judge, math_equiv, mbpp, numeric, pairwise_judge, rating_judge, regex"),
        ("scorer: {name: exact, params: {ignore_cas: true}}",
         "scorer: scorer 'exact' has no param 'ignore_cas'; did you mean: ignore_case?; its params: ignore_case, last_line"),
    ],
)
def test_validation_names_file_and_key(tmp_path: Path, extra: str, problem: str) -> None:
    assert spec_error(tmp_path, MINIMAL + extra + "\n") == problem


def test_source_and_top_level_problems(tmp_path: Path) -> None:
    assert spec_error(tmp_path, "name: mybench\nsource: {layouts: [x.csv], header: false}\n") == (
        "source: a csv without a header row needs `columns`")
    assert spec_error(tmp_path, "name: mybench\nsource: {layouts: [x.csv], fromat: csv}\n") == (
        "source.fromat: unknown key; did you mean: format?")
    assert spec_error(tmp_path, "name: mybench\nsource: {layouts: []}\n") == "source: `layouts` needs at least one path"
    assert spec_error(tmp_path, "name: mybench\n") == "source: Field required"
    assert spec_error(tmp_path, "name: my bench\nsource: {layouts: [x.csv]}\n") == (
        "name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.]*$'")
    # Two problems at once: both named.
    assert spec_error(tmp_path, MINIMAL + "prompt: {fewshot: -1, format: html}\n") == (
        "prompt.fewshot: Input should be greater than or equal to 0; prompt.format: Input should be 'auto', 'chat' or 'text'")
    assert spec_error(tmp_path, "") == "the spec is empty; it needs at least `name` and `source`"
    assert spec_error(tmp_path, "- name: mybench\n") == "a task spec must be a mapping, got list"
    assert spec_error(tmp_path, "name: mybench\nsource: {layouts: [x.csv]\n") == (
        "line 3: not valid YAML (expected ',' or '}', but got '<stream end>')")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'latin1.yaml'))}: not UTF-8 text$"):
        load_spec_file(tmp_path / "latin1.yaml")
    with pytest.raises(ConfigError, match=r"^task spec .*nowhere\.yaml does not exist$"):
        load_spec_file(tmp_path / "nowhere.yaml")


def test_bad_spec_on_the_command_line_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "mybench.yaml"
    spec.write_text(MINIMAL + "prompt: {fewshot: -1}\n", encoding="utf-8")
    code = main(["run", "--api-base", "http://127.0.0.1:9/v1", "--datasets", str(spec), "-w", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"error: {spec}: prompt.fewshot: Input should be greater than or equal to 0\n"
    assert not (tmp_path / "out").exists()


def test_relative_layouts_follow_the_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "specs" / "mybench.yaml"
    spec.parent.mkdir()
    spec.write_text("name: mybench\nsource: {layouts: ['./data/{subset}.jsonl', '../shared/{subset}.jsonl', "
                    "'mybench/{split}/{subset}.jsonl']}\n", encoding="utf-8")
    layouts = load_spec_file(spec).source.layouts
    assert layouts == (str(tmp_path / "specs" / "data" / "{subset}.jsonl"), str(tmp_path / "shared" / "{subset}.jsonl"),
                       "mybench/{split}/{subset}.jsonl")  # the last one is looked for under the data roots


def test_builtin_specs_validate() -> None:
    # The stricter checks accept every shipped spec.
    assert {"ceval", "cmmlu", "mmlu", "gsm8k"} <= set(builtin_specs())


# ---------------------------------------------------------------- a new benchmark is one spec file

SPEC = """\
# A small multiple-choice benchmark: three subsets, 2 to 5 options.
name: mybench
title: My Bench
source:
  layouts: ["./data/{split}/{subset}.jsonl"]
splits: {eval: test, fewshot: dev}
categories: [Science, Lab, Arts]
subsets:
  - {name: physics, title: Physics, categories: [Science]}
  - {name: chemistry, title: Chemistry, categories: [Science, Lab]}
  - {name: music, title: Music, categories: [Arts, Lab]}
groups:
  - {name: hard, title: The hard ones, subsets: [chemistry, music]}
prompt:
  preset: multiple_choice
  language: en
  texts:
    en: {instruction: "Questions about {subject}.", answer_cue: "Answer:"}
  fewshot: 1
modes: [gen, ppl]
scorer: {name: choice}
"""

# subset -> (question, options, gold letter, the letter the server answers)
QUESTIONS: dict[str, list[tuple[str, list[str], str, str]]] = {
    "physics": [
        ("Unit of force?", ["newton", "joule", "watt", "pascal"], "A", "A"),
        ("Unit of energy?", ["newton", "joule", "watt", "pascal"], "B", "B"),
        ("Unit of power?", ["newton", "joule", "watt", "pascal"], "C", "C"),
        ("Unit of pressure?", ["newton", "joule", "watt", "pascal"], "D", "D"),
    ],
    "chemistry": [
        ("Symbol of gold?", ["Ag", "Fe", "Cu", "Pb", "Au"], "E", "E"),
        ("Symbol of silver?", ["Ag", "Fe", "Cu", "Pb", "Au"], "A", "A"),
        ("Symbol of copper?", ["Ag", "Fe", "Cu", "Pb", "Au"], "C", "B"),  # answered wrong
        ("Symbol of lead?", ["Ag", "Fe", "Cu", "Pb"], "D", "D"),
    ],
    "music": [
        ("Is a violin a string instrument?", ["yes", "no"], "A", "A"),
        ("How many lines has a staff?", ["four", "five", "six"], "B", "C"),  # answered wrong
    ],
}
SHOTS = {subset: (f"Example question about {subset}?", ["one", "two"], "B") for subset in QUESTIONS}


def _write_benchmark(root: Path) -> Path:
    for split, rows in (("test", QUESTIONS), ("dev", {s: [(*shot, "")] for s, shot in SHOTS.items()})):
        folder = root / "data" / split
        folder.mkdir(parents=True)
        for subset, questions in rows.items():
            lines = [json.dumps({"question": q, **dict(zip("ABCDEFGHIJ", options)), "answer": gold})
                     for q, options, gold, _ in questions]
            (folder / f"{subset}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = root / "mybench.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    return spec


def _answer_of(prompt: str) -> str:
    """The letter the server gives: the question asked is the last one in the prompt."""
    known = {q: answer for questions in QUESTIONS.values() for q, _, _, answer in questions}
    return known[max((q for q in known if q in prompt), key=prompt.rfind)]


def _summary_csv(run: Path, model: str = "m") -> dict[tuple[str, str], str]:
    with open(run / "summary" / "summary.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {(r["dataset"], r["metric"]): r[model] for r in rows}


def test_new_benchmark_is_one_spec_file(tmp_path: Path) -> None:
    spec = _write_benchmark(tmp_path / "mybench")
    with OpenAIServer(lambda body: f"The answer is {_answer_of(last_user_message(body))}.", model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "--datasets", str(spec), "-w", str(tmp_path / "out")])
        bodies = [r.json for r in server.post_requests()]
    assert code == 0
    assert len(bodies) == 10
    run = only_run(tmp_path / "out")

    expected = {"physics": 100.0, "chemistry": 75.0, "music": 50.0}
    for subset, accuracy in expected.items():
        result = read_result(run, "m", f"mybench-{subset}")
        assert (result["value"], result["n"], result["n_failed"]) == (pytest.approx(accuracy), len(QUESTIONS[subset]), 0)
    scores = [json.loads(line) for line in (run / "scores" / "m" / "mybench-chemistry.jsonl").read_text("utf-8").splitlines()]
    assert [(s["item_id"], s["status"], s["answer"], s["correct"]) for s in scores] == [
        ("0", "scored", "E", True), ("1", "scored", "A", True), ("2", "scored", "B", False), ("3", "scored", "D", True)]
    assert {s["rule"] for s in scores} != {None}

    # One row per subset, then the benchmark, its categories (a one-subset category is left
    # out: it would only repeat its subset's row) and the named group.
    table = _summary_csv(run)
    assert table[("mybench-physics", "accuracy")] == "100.00"
    assert table[("mybench-chemistry", "accuracy")] == "75.00"
    assert table[("mybench-music", "accuracy")] == "50.00"
    assert table[("mybench", "accuracy (mean of subjects)")] == "75.00"
    assert table[("mybench", "accuracy (mean of questions)")] == "80.00"  # 8 of 10
    assert table[("mybench-science", "accuracy (mean of subjects)")] == "87.50"
    assert table[("mybench-science", "accuracy (mean of questions)")] == "87.50"  # 7 of 8
    assert table[("mybench-lab", "accuracy (mean of subjects)")] == "62.50"
    assert table[("mybench-lab", "accuracy (mean of questions)")] == "66.67"  # 4 of 6
    assert table[("mybench-hard", "accuracy (mean of subjects)")] == "62.50"
    assert not any(dataset.startswith("mybench-arts") for dataset, _ in table)

    # The prompts: the spec's instruction with the subset's title, one example turn, 2-5 options.
    by_question = {m["messages"][-1]["content"].split("\n")[0]: m["messages"] for m in bodies}
    assert by_question["Symbol of gold?"] == [
        {"role": "user", "content": "Questions about Chemistry.\n\nExample question about chemistry?\nA. one\nB. two\nAnswer:"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "Symbol of gold?\nA. Ag\nB. Fe\nC. Cu\nD. Pb\nE. Au\nAnswer:"},
    ]
    assert by_question["How many lines has a staff?"][0]["content"].startswith("Questions about Music.\n\n")
    assert by_question["How many lines has a staff?"][-1]["content"] == (
        "How many lines has a staff?\nA. four\nB. five\nC. six\nAnswer:")
    records = read_records(run, "m", "mybench-music")
    assert [r["output"] for r in records] == ["The answer is A.", "The answer is C."]


def test_new_benchmark_in_ppl_mode_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `mode: ppl` in a config file entry; the server's echo log-probs favour the letter it "believes".
    spec = _write_benchmark(tmp_path / "mybench")

    def logprob_fn(prompt: str) -> Any:
        tokens, offsets, logprobs = default_logprob_fn(prompt)
        if prompt.endswith(" " + _answer_of(prompt)):
            logprobs = [*logprobs[:-1], -0.01]
        return tokens, offsets, logprobs

    config = tmp_path / "run.yaml"
    config.write_text(f"datasets:\n  - {{name: {spec}, mode: ppl}}\n", encoding="utf-8")
    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["base"]) as server:
        code = main(["run", str(config), "--api-base", server.base_url, "--api-type", "completions",
                     "-w", str(tmp_path / "out")])
        bodies = [r.json for r in server.post_requests()]
    assert code == 0
    run = only_run(tmp_path / "out")
    for subset, accuracy in {"physics": 100.0, "chemistry": 75.0, "music": 50.0}.items():
        assert read_result(run, "base", f"mybench-{subset}_ppl")["value"] == pytest.approx(accuracy)
    # Every option of a question is a continuation: 5 for the gold question, 2 for the violin.
    prompts = [p for b in bodies for p in ([b["prompt"]] if isinstance(b["prompt"], str) else b["prompt"])]
    gold = [p for p in prompts if "\n\nSymbol of gold?\n" in p]
    assert sorted(p[-2:] for p in gold) == [" A", " B", " C", " D", " E"]
    assert gold[0].startswith("Questions about Chemistry.\n\nExample question about chemistry?\nA. one\nB. two\nAnswer: B\n\n")
    table = _summary_csv(run, "base")
    assert table[("mybench_ppl", "accuracy (mean of questions)")] == "80.00"
    assert table[("mybench-lab_ppl", "accuracy (mean of subjects)")] == "62.50"


def test_spec_path_expands_to_every_subset(tmp_path: Path) -> None:
    spec = _write_benchmark(tmp_path / "mybench")
    configs = resolve_datasets([str(spec)])
    assert [(c.abbr, c.subject, c.mode, c.spec_path) for c in configs] == [
        (f"mybench-{s}", s, "gen", str(spec.resolve())) for s in ("physics", "chemistry", "music")]
    assert [c.abbr for c in resolve_datasets([str(spec)], mode="ppl")] == [
        "mybench-physics_ppl", "mybench-chemistry_ppl", "mybench-music_ppl"]


# ---------------------------------------------------------------- a free-form benchmark on real data

GSM8K_SPEC = """\
name: gsm8k_mine
title: GSM8K (my spec)
source:
  layouts: ["gsm8k/grade_school_math/data/{split}.jsonl"]
splits: {eval: test, fewshot: train}
fields: {answer_after: "####"}
prompt:
  preset: free_form
  texts:
    en:
      template: "Question: {question}"
      answer_cue: "Answer:"
      shot_answer: "{answer}"
  fewshot: 2
  max_out_len: 64
scorer: {name: numeric}
"""


@needs_shared_data
def test_free_form_benchmark_on_real_gsm8k(tmp_path: Path) -> None:
    spec = tmp_path / "gsm8k_mine.yaml"
    spec.write_text(GSM8K_SPEC, encoding="utf-8")
    test = [json.loads(line) for line in (SHARED_DATASETS / "gsm8k/grade_school_math/data/test.jsonl").read_text("utf-8").splitlines()[:5]]
    finals = {row["question"]: row["answer"].split("####")[-1].strip() for row in test}
    wrong = test[1]["question"]  # the server gets this one wrong

    def respond(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        question = next(q for q in finals if q in prompt)
        return f"Let me think. The answer is {int(finals[question]) + (1 if question == wrong else 0)}."

    with OpenAIServer(respond, model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "--datasets", str(spec), "--limit", "5",
                     "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out")])
        bodies = [r.json for r in server.post_requests()]
    assert code == 0
    run = only_run(tmp_path / "out")
    result = read_result(run, "m", "gsm8k_mine")
    assert (result["value"], result["n"]) == (80.0, 5)
    scores = [json.loads(line) for line in (run / "scores" / "m" / "gsm8k_mine.jsonl").read_text("utf-8").splitlines()]
    assert [s["correct"] for s in scores] == [True, False, True, True, True]
    assert scores[0]["answer"] in ("18", 18) and scores[0]["rule"] == "answer_is"
    # Two worked examples from the train split as prior turns, answered with their final number.
    messages = bodies[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == f"Question: {test[0]['question']}\nAnswer:"
    assert messages[0]["content"].startswith("Question: Natalia sold clips to 48 of her friends in April")
    assert messages[1]["content"] == "72"
    assert all(b["max_tokens"] == 64 for b in bodies)


def test_benchmark_file_without_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.csv").write_text("question,answer\n", encoding="utf-8")
    spec = tmp_path / "mybench.yaml"
    spec.write_text("name: mybench\nsource: {layouts: [./data.csv]}\nprompt: {preset: free_form}\nscorer: {name: exact}\n",
                    encoding="utf-8")
    code = main(["run", "--api-base", "http://127.0.0.1:9/v1", "--datasets", str(spec), "-w", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'data.csv'}: the file holds no rows\n"


def test_an_id_range_split_of_a_truncated_file_is_refused() -> None:
    """splits.ids test 11-15 over a file that stops at id 13: refused, not scored as the whole split."""
    from proctor.core import Sample
    from proctor.errors import DataError
    from proctor.tasks.spec import SplitsSpec

    splits = SplitsSpec(ids={"test": ("11-15",), "prompt": ("2-3",)})
    rows = [Sample(id=str(i), question="q", target="a") for i in range(1, 14)]
    assert [s.id for s in splits.select("prompt", rows)] == ["2", "3"]
    with pytest.raises(DataError, match=r"split 'test' is ids 11-15, but the data has no row with id 14, 15 \(2 of 5"):
        splits.select("test", rows)
    assert len(splits.select("test", rows + [Sample(id=str(i), question="q", target="a") for i in (14, 15)])) == 5
