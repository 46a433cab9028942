"""A user's own data file as a benchmark (`--datasets ./my.jsonl`, `./my.csv`, OpenCompass's
`--custom-dataset-path` and `<file>.meta.json`), end to end against the real test server."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from openai_server import OpenAIServer, default_logprob_fn, last_user_message
from run_helpers import only_run, read_records, read_result

from proctor.cli import main
from proctor.errors import ConfigError
from proctor.tasks.custom import spec_of_path

# question -> what the server answers (a letter for multiple choice, text for free-form QA)
SERVER_SAYS: dict[str, str] = {}


def _say(prompt: str) -> str:
    return SERVER_SAYS[max((q for q in SERVER_SAYS if q in prompt), key=prompt.rfind)]


def responder(body: dict[str, Any]) -> str:
    return _say(last_user_message(body))


def logprob_fn(prompt: str) -> Any:
    """Echo log-probs that favour the continuation " <letter the server says>"."""
    tokens, offsets, logprobs = default_logprob_fn(prompt)
    if prompt.endswith(" " + _say(prompt)):
        logprobs = [*logprobs[:-1], -0.01]
    return tokens, offsets, logprobs


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the current directory, so datasets are named `./my.jsonl` as a user would."""
    monkeypatch.chdir(tmp_path)
    SERVER_SAYS.clear()
    return tmp_path


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def mc_rows(questions: list[tuple[str, list[str], str, str]]) -> list[dict[str, Any]]:
    """(question, options, gold letter, the server's letter) -> rows with option columns A, B, ..."""
    for question, _, _, says in questions:
        SERVER_SAYS[question] = says
    return [{"question": q, **dict(zip("ABCDEFGHIJ", options)), "answer": gold} for q, options, gold, _ in questions]


QUIZ = [
    ("Largest planet?", ["Mars", "Jupiter", "Venus", "Earth"], "B", "B"),
    ("Closest star?", ["Sirius", "Vega", "the Sun", "Rigel"], "C", "C"),
    ("Red planet?", ["Mars", "Jupiter", "Venus", "Earth"], "A", "D"),  # answered wrong
    ("Ringed planet?", ["Mars", "Saturn", "Venus", "Earth"], "B", "B"),
]


def run(server: OpenAIServer, work: Path, *args: str) -> tuple[int, Path | None]:
    code = main(["run", "--api-base", server.base_url, "-w", str(work / "out"), *args])
    out = work / "out"
    return code, (only_run(out) if out.is_dir() and any(out.iterdir()) else None)


def read_scores(run_dir: Path, model: str, dataset: str) -> list[dict[str, Any]]:
    path = run_dir / "scores" / model / f"{dataset}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- multiple choice


def test_jsonl_multiple_choice_gen_by_default(work: Path) -> None:
    jsonl(work / "quiz.jsonl", mc_rows(QUIZ))
    with OpenAIServer(lambda body: f"Answer: {responder(body)}", model_ids=["m"]) as server:
        code, run_dir = run(server, work, "--datasets", "./quiz.jsonl")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    result = read_result(run_dir, "m", "quiz")
    assert (result["value"], result["n"], result["n_failed"]) == (75.0, 4, 0)
    assert [(s["item_id"], s["answer"], s["correct"]) for s in read_scores(run_dir, "m", "quiz")] == [
        ("0", "B", True), ("1", "C", True), ("2", "D", False), ("3", "B", True)]
    # Zero-shot, one user turn: the question, its options, the answer cue.
    assert bodies[0]["messages"] == [
        {"role": "user", "content": "Largest planet?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth\nAnswer:"}]
    assert [r["output"] for r in read_records(run_dir, "m", "quiz")] == ["Answer: B", "Answer: C", "Answer: D", "Answer: B"]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    (dataset,) = config["datasets"]
    assert (dataset["abbr"], dataset["mode"], dataset["spec_path"]) == ("quiz", "gen", str(work / "quiz.jsonl"))


def test_csv_and_choices_list_in_one_run(work: Path) -> None:
    five = [
        ("2 + 3?", ["1", "2", "3", "4", "5"], "E", "E"),
        ("2 + 1?", ["1", "2", "3", "4", "5"], "C", "C"),
        ("2 - 1?", ["1", "2", "3", "4", "5"], "A", "B"),  # answered wrong
    ]
    with open(work / "arith.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question", "A", "B", "C", "D", "E", "answer"])
        for i, row in enumerate(mc_rows(five)):
            writer.writerow([f"a{i}", *row.values()])
    # `choices` lists, with the answer as a 0-based index or as the option text.
    SERVER_SAYS.update({"Opposite of hot?": "A", "Opposite of up?": "A"})
    jsonl(work / "words.jsonl", [
        {"question": "Opposite of hot?", "choices": ["cold", "warm"], "answer": 0},
        {"question": "Opposite of up?", "choices": ["left", "down", "right"], "answer": "down"},
    ])
    with OpenAIServer(responder, model_ids=["m"]) as server:
        code, run_dir = run(server, work, "--datasets", "./arith.csv", "./words.jsonl")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    assert read_result(run_dir, "m", "arith")["value"] == pytest.approx(200 / 3)
    assert read_result(run_dir, "m", "words")["value"] == 50.0
    assert [s["item_id"] for s in read_scores(run_dir, "m", "arith")] == ["a0", "a1", "a2"]  # ids from the id column
    prompts = {b["messages"][-1]["content"] for b in bodies}
    assert "2 + 3?\nA. 1\nB. 2\nC. 3\nD. 4\nE. 5\nAnswer:" in prompts
    assert "Opposite of up?\nA. left\nB. down\nC. right\nAnswer:" in prompts


# ---------------------------------------------------------------- free-form QA


def test_free_form_qa_scored_exactly(work: Path) -> None:
    jsonl(work / "qa.jsonl", [
        {"question": "Capital of France?", "answer": "Paris"},
        {"question": "How many legs has a spider?", "answer": 8},
        {"question": "A primary colour?", "answer": ["red", "blue", "yellow"]},
        {"question": "Chemical symbol of iron?", "answer": "Fe"},
    ])
    SERVER_SAYS.update({"Capital of France?": "paris.", "How many legs has a spider?": "8",
                        "A primary colour?": "Blue", "Chemical symbol of iron?": "Ir"})
    with OpenAIServer(responder, model_ids=["m"]) as server:
        code, run_dir = run(server, work, "--datasets", "./qa.jsonl")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    assert read_result(run_dir, "m", "qa")["value"] == 75.0
    assert [(s["answer"], s["correct"]) for s in read_scores(run_dir, "m", "qa")] == [
        ("paris", True), ("8", True), ("blue", True), ("ir", False)]
    assert [b["messages"] for b in bodies][0] == [{"role": "user", "content": "Capital of France?"}]
    spec, _ = spec_of_path(str(work / "qa.jsonl"))
    assert (spec.scorer.name, spec.prompt.preset, spec.modes) == ("exact", "free_form", ("gen",))


# ---------------------------------------------------------------- ppl


def test_ppl_from_a_config_file_entry(work: Path) -> None:
    jsonl(work / "quiz.jsonl", mc_rows(QUIZ))
    (work / "run.yaml").write_text("datasets:\n  - {name: ./quiz.jsonl, mode: ppl}\n", encoding="utf-8")
    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["base"]) as server:
        code, run_dir = run(server, work, "./run.yaml", "--api-type", "completions")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    result = read_result(run_dir, "base", "quiz_ppl")
    assert (result["value"], result["n"]) == (75.0, 4)
    assert [s["answer"] for s in read_scores(run_dir, "base", "quiz_ppl")] == ["B", "C", "D", "B"]
    prompts = [p for b in bodies for p in ([b["prompt"]] if isinstance(b["prompt"], str) else b["prompt"])]
    assert all(b["echo"] is True and b["max_tokens"] == 0 for b in bodies)
    first = sorted(p for p in prompts if p.startswith("Largest planet?"))
    assert first == [f"Largest planet?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth\nAnswer: {x}" for x in "ABCD"]


def test_ppl_from_opencompass_flags(work: Path) -> None:
    jsonl(work / "quiz.jsonl", mc_rows(QUIZ))
    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["base"]) as server:
        code, run_dir = run(server, work, "--custom-dataset-path", "quiz.jsonl", "--custom-dataset-infer-method", "ppl",
                            "--api-type", "completions")
    assert code == 0 and run_dir is not None
    assert read_result(run_dir, "base", "quiz_ppl")["value"] == 75.0
    records = read_records(run_dir, "base", "quiz_ppl")
    assert all(len(r["loglikelihoods"]) == 4 and r["output"] is None for r in records)


# ---------------------------------------------------------------- OpenCompass meta.json

HUMAN_PROMPT = "Question: {question}\nA. {A}\nB. {B}\nC. {C}\nAnswer:"


def _opencompass_file(work: Path, **meta: Any) -> Path:
    rows = [{"question": q, **dict(zip("ABC", options)), "gold": gold}
            for q, options, gold in [("Boiling point of water?", ["100 C", "50 C", "0 C"], "A"),
                                     ("Freezing point of water?", ["100 C", "50 C", "0 C"], "C"),
                                     ("Body temperature?", ["37 C", "20 C", "45 C"], "A")]]
    SERVER_SAYS.update({"Boiling point of water?": "A", "Freezing point of water?": "C", "Body temperature?": "B"})
    path = jsonl(work / "temps.jsonl", rows)
    base = {"abbr": "temps_oc", "data_type": "mcq", "infer_method": "gen", "human_prompt": HUMAN_PROMPT,
            "bot_prompt": "{answer}", "input_columns": ["question", "A", "B", "C"], "output_column": "gold",
            "options": ["A", "B", "C"]}
    (work / "temps.jsonl.meta.json").write_text(json.dumps({**base, **meta}), encoding="utf-8")
    return path


def test_opencompass_meta_json_gen(work: Path) -> None:
    _opencompass_file(work)
    with OpenAIServer(responder, model_ids=["m"]) as server:
        code, run_dir = run(server, work, "--datasets", "./temps.jsonl")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    assert read_result(run_dir, "m", "temps_oc")["value"] == pytest.approx(200 / 3)  # the meta's abbr names it
    # The human_prompt is the whole question block, as written.
    assert [b["messages"] for b in bodies] == [
        [{"role": "user", "content": "Question: Boiling point of water?\nA. 100 C\nB. 50 C\nC. 0 C\nAnswer:"}],
        [{"role": "user", "content": "Question: Freezing point of water?\nA. 100 C\nB. 50 C\nC. 0 C\nAnswer:"}],
        [{"role": "user", "content": "Question: Body temperature?\nA. 37 C\nB. 20 C\nC. 45 C\nAnswer:"}],
    ]


def test_opencompass_meta_json_ppl(work: Path) -> None:
    # infer_method ppl in the meta: `--datasets ./temps.jsonl` is scored by log-likelihood.
    _opencompass_file(work, infer_method="ppl", abbr="temps", bot_prompt="{gold}")
    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["base"]) as server:
        code, run_dir = run(server, work, "--datasets", "./temps.jsonl", "--api-type", "completions")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    assert read_result(run_dir, "base", "temps_ppl")["value"] == pytest.approx(200 / 3)
    prompts = sorted(p for b in bodies for p in ([b["prompt"]] if isinstance(b["prompt"], str) else b["prompt"]))
    assert "Question: Body temperature?\nA. 37 C\nB. 20 C\nC. 45 C\nAnswer: B" in prompts
    assert len(prompts) == 9  # 3 questions x 3 options


def test_opencompass_meta_with_other_column_names(work: Path) -> None:
    # Option columns and question column named in the meta; the prompts name them too.
    SERVER_SAYS.update({"Sky colour?": "B"})
    jsonl(work / "named.jsonl", [{"stem": "Sky colour?", "opt1": "green", "opt2": "blue", "label": "B"}])
    (work / "named.jsonl.meta.json").write_text(json.dumps({
        "human_prompt": "Q: {stem}\n(A) {opt1}\n(B) {opt2}\nA:", "input_columns": ["stem", "opt1", "opt2"],
        "output_column": "label", "options": ["opt1", "opt2"]}), encoding="utf-8")
    with OpenAIServer(responder, model_ids=["m"]) as server:
        code, run_dir = run(server, work, "--datasets", "./named.jsonl")
        bodies = [r.json for r in server.post_requests()]
    assert code == 0 and run_dir is not None
    assert read_result(run_dir, "m", "named")["value"] == 100.0
    assert bodies[0]["messages"] == [{"role": "user", "content": "Q: Sky colour?\n(A) green\n(B) blue\nA:"}]


# ---------------------------------------------------------------- bad files: one line, exit 2


def _fails(work: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with OpenAIServer(lambda body: "A", model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "-w", str(work / "out"), *args])
        sent = server.post_requests()
    captured = capsys.readouterr()
    assert code == 2
    assert sent == []  # nothing is asked before the data is known to be good
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1
    assert captured.err.startswith("error: ")
    return captured.err.removeprefix("error: ").rstrip("\n")


BAD_FILES: list[tuple[str, str, Callable[[Path], str]]] = [
    ("bad_answer.jsonl",
     '{"question": "q1", "A": "x", "B": "y", "answer": "A"}\n{"question": "q2", "A": "x", "B": "y", "answer": "Z"}\n',
     lambda p: f"{p}: line 2: answer 'Z' is not one of A/B, an index or an option text"),
    ("no_question.jsonl", '{"prompt_text": "q1", "answer": "A"}\n',
     lambda p: f"{p}: line 1: no question field (question or input or problem or prompt or query or question_stem); found ['answer', 'prompt_text']"),
    ("bad_json.jsonl", '{"question": "q1", "answer": "x"}\n{"question": "q2", "answer": }\n',
     lambda p: f"{p}: line 2: not valid JSON (Expecting value: line 1 column 30 (char 29))"),
    ("short_row.csv", "question,A,B,answer\nq1,x,y,A\nq2,x,B\n", lambda p: f"{p}: row 3 (line 3): 3 fields, expected 4"),
    ("empty_answer.csv", "question,answer\nq1,yes\nq2,\n", lambda p: f"{p}: row 3 (line 3): the answer ('answer') is empty"),
    ("empty.jsonl", "", lambda p: f"{p}: the file holds no rows"),
    # Option columns A and C only: not a free-form question with the options dropped.
    ("gap.jsonl", '{"question": "q1", "A": "x", "C": "y", "answer": "A"}\n',
     lambda p: f"{p}: line 1: option columns A, C have a gap: no column 'B'; options are the columns A, B, C, ... in order"),
    ("gap_later.jsonl",
     '{"question": "q1", "A": "x", "B": "y", "answer": "A"}\n{"question": "q2", "A": "x", "C": "y", "answer": "A"}\n',
     lambda p: f"{p}: line 2: option columns A, C have a gap: no column 'B'; options are the columns A, B, C, ... in order"),
    ("no_a.jsonl", '{"question": "q1", "B": "x", "C": "y", "answer": "B"}\n',
     lambda p: f"{p}: line 1: option columns B, C have a gap: no column 'A'; options are the columns A, B, C, ... in order"),
    ("same_text.jsonl", '{"question": "q1", "A": "x", "B": "y", "C": "y", "answer": "y"}\n',
     lambda p: f"{p}: line 1: answer 'y' is the text of options B and C, which are identical; "
               "make the options distinct or give the answer as a letter"),
    ("same_text_list.jsonl", '{"question": "q1", "choices": ["y", "x", "y"], "answer": "y"}\n',
     lambda p: f"{p}: line 1: answer 'y' is the text of options A and C, which are identical; "
               "make the options distinct or give the answer as a letter"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_data_file_is_one_line(work: Path, capsys: pytest.CaptureFixture[str], name: str, content: str,
                                   message: Callable[[Path], str]) -> None:
    (work / name).write_text(content, encoding="utf-8")
    assert _fails(work, capsys, "--datasets", f"./{name}") == message(work / name)


def test_bad_custom_dataset_settings_are_one_line(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl(work / "qa.jsonl", [{"question": "q", "answer": "a"}])
    assert _fails(work, capsys, "--custom-dataset-path", "qa.jsonl", "--custom-dataset-infer-method", "ppl") == (
        "qa.jsonl: infer method ppl needs multiple-choice data")
    (work / "run.yaml").write_text("datasets:\n  - {name: ./qa.jsonl, mode: ppl}\n", encoding="utf-8")
    assert _fails(work, capsys, "./run.yaml") == "dataset './qa.jsonl': qa has no ppl mode (it offers gen)"
    assert _fails(work, capsys, "--datasets", "./missing.jsonl") == "dataset file ./missing.jsonl does not exist"
    (work / "notes.txt").write_text("question,answer\n", encoding="utf-8")
    assert _fails(work, capsys, "--datasets", "./notes.txt").endswith(
        "notes.txt: unknown data file type; use one of .csv, .jsonl, .json, .jsonl.gz, .json.gz, .parquet")


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"infer_methd": "ppl"}, "unknown key 'infer_methd'; did you mean: infer_method?; expected some of "),
        ({"data_type": "choice"}, "data_type must be one of mcq, qa, got 'choice'"),
        ({"options": "A,B"}, "options must be a list of column names"),
        ({"human_prompt": "Question: {questoin}\nAnswer:"}, "human_prompt: names {questoin}, which "),
        ({"data_type": "qa", "infer_method": "ppl"}, "infer_method ppl needs multiple-choice data (data_type mcq)"),
    ],
)
def test_bad_meta_json_is_one_line(work: Path, capsys: pytest.CaptureFixture[str], meta: dict[str, Any],
                                   problem: str) -> None:
    jsonl(work / "mc.jsonl", [{"question": "q", "A": "x", "B": "y", "answer": "A"}])
    (work / "mc.jsonl.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    message = _fails(work, capsys, "--datasets", "./mc.jsonl")
    assert message.startswith(f"{work / 'mc.jsonl.meta.json'}: {problem}")


def test_meta_mcq_without_options(work: Path) -> None:
    jsonl(work / "plain.jsonl", [{"question": "q", "answer": "A"}])
    (work / "plain.jsonl.meta.json").write_text(json.dumps({"data_type": "mcq"}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        spec_of_path(str(work / "plain.jsonl"))
    assert str(info.value) == (f"{work / 'plain.jsonl.meta.json'}: data_type mcq, but {work / 'plain.jsonl'}: line 1 "
                               "has no options (columns A, B, ... or a `choices` list; or name the option columns in `options`)")


def test_edited_file_is_read_again(work: Path) -> None:
    # The spec of a file is cached per process; an edit (here: options added) is seen.
    path = jsonl(work / "grow.jsonl", [{"question": "q", "answer": "x"}])
    assert spec_of_path(str(path))[0].prompt.preset == "free_form"
    jsonl(path, [{"question": "q", "A": "x", "B": "y", "answer": "A"}])
    import os

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    assert spec_of_path(str(path))[0].prompt.preset == "multiple_choice"


def test_limit_and_fewshot_apply_to_custom_dataset_path(tmp_path: Path) -> None:
    """`--custom-dataset-path F --limit 1`: the flag applies to that dataset too (it was dropped)."""
    from proctor.api import build_run_config
    from proctor.tasks.custom import custom_dataset_configs

    path = jsonl(tmp_path / "quiz.jsonl", mc_rows(QUIZ))
    config = build_run_config(datasets=custom_dataset_configs(str(path)),
                              api={"type": "api", "api_base": "http://127.0.0.1:1/v1", "model": "m"},
                              dataset_overrides={"limit": 1, "fewshot": 0})
    assert [(d.limit, d.fewshot) for d in config.datasets] == [(1, 0)]
