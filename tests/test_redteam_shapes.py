"""Red team: ARC- and Hugging Face-shaped files written from real MMLU questions (gold known from
the CSV), plus nasty variants, through `proctor run --datasets ./file.jsonl`. The simulated model
picks an option by its TEXT (the gold or another) and answers the letter the prompt shows it
under, so the score is right only if the prompt and the target agree with the file. A row that
cannot be read is refused in one line naming the file and row; no prompt holds a repr."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from openai_server import OpenAIServer, Reply, last_user_message
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data
Row = tuple[str, list[str], str]  # question, options, gold option text


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def _right(q: str) -> bool:
    return _h("rt" + q) % 3 != 0


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    out: list[Row] = []
    with open(SHARED_DATASETS / "mmlu/data/test/astronomy_test.csv", encoding="utf-8", newline="") as f:
        for r in csv.reader(f):
            opts = r[1:5]
            if len({o.strip() for o in opts}) == 4:
                out.append((r[0], opts, opts["ABCD".index(r[5])]))
    return out[:16]


_SHOWN = re.compile(r"^\s*\(?([A-J])[.．:：)]\s?(.*)$")


def _responder(rows: list[Row], prompts: list[str]) -> Callable[[dict[str, Any]], Reply]:
    gold = {q: (o, g) for q, o, g in rows}

    def reply(body: dict[str, Any]) -> Reply:
        prompt = last_user_message(body)
        prompts.append(prompt)
        q = max((q for q in gold if q in prompt), key=lambda q: prompt.rfind(q))
        shown: dict[str, str] = {}
        for line in prompt[prompt.rfind(q):].splitlines():
            m = _SHOWN.match(line)
            if m and m.group(1) not in shown:
                shown[m.group(1)] = m.group(2).strip()
        options, g = gold[q]
        want = g if _right(q) else next(o for o in options if o != g)
        letters = [letter for letter, text in shown.items() if text == want.strip()]
        return Reply(f"The answer is {letters[0]}." if len(letters) == 1 else "I cannot tell.")

    return reply


def _arc(q: str, o: list[str], g: str, labels: list[Any], key: Any = None, order: list[int] | None = None
         ) -> dict[str, Any]:
    idx = order or list(range(len(o)))
    return {"id": str(_h(q)), "question": {"stem": q, "choices": [{"label": labels[i], "text": o[i]} for i in idx]},
            "answerKey": labels[o.index(g)] if key is None else key}


SHAPES: dict[str, Callable[[str, list[str], str], dict[str, Any]]] = {
    "arc_digit_labels": lambda q, o, g: _arc(q, o, g, ["1", "2", "3", "4"]),
    "arc_five_letters": lambda q, o, g: _arc(q, [*o, "none of these"], g, list("ABCDE")),
    "arc_out_of_order": lambda q, o, g: _arc(q, o, g, list("ABCD"), order=[3, 1, 0, 2]),
    "arc_labels_reversed": lambda q, o, g: _arc(q, o, g, list("DCBA")),
    "arc_lowercase_key_upper": lambda q, o, g: _arc(q, o, g, list("abcd"), key="ABCD"[o.index(g)]),
    "arc_int_labels_int_key": lambda q, o, g: _arc(q, o, g, [1, 2, 3, 4], key=o.index(g) + 1),
    "arc_answer_is_text": lambda q, o, g: _arc(q, o, g, list("ABCD"), key=g),
    "arc_blank_padded": lambda q, o, g: _arc(q, o, g, [" A", "B ", " C ", "D"], key=f" {'ABCD'[o.index(g)]} "),
    "hf_text_label": lambda q, o, g: {"question": q, "choices": {"text": o, "label": list("ABCD")},
                                      "answerKey": "ABCD"[o.index(g)]},
    "hf_digit_labels": lambda q, o, g: {"question": q, "choices": {"text": o, "label": ["1", "2", "3", "4"]},
                                        "answerKey": str(o.index(g) + 1)},
    "hf_mmlu_index": lambda q, o, g: {"question": q, "subject": "astronomy", "choices": o, "answer": o.index(g)},
}


def _run(tmp_path: Path, name: str, lines: list[dict[str, Any]], rows: list[Row]) -> tuple[int, float | None, str,
                                                                                           list[str]]:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    prompts: list[str] = []
    err = io.StringIO()
    with OpenAIServer(_responder(rows, prompts), model_ids=["m"]) as server, contextlib.redirect_stderr(err):
        code = main(["run", "--api-base", server.base_url, "--datasets", str(path), "-w", str(tmp_path / f"w_{name}")])
    results = list((tmp_path / f"w_{name}").glob("*/results/*/*.json"))
    value = json.loads(results[0].read_text(encoding="utf-8"))["value"] if results else None
    return code, value, err.getvalue(), prompts


def test_arc_and_hf_shapes_score_the_truth(tmp_path: Path, rows: list[Row]) -> None:
    truth = 100.0 * sum(_right(q) for q, _, _ in rows) / len(rows)
    for name, make in SHAPES.items():
        code, value, err, prompts = _run(tmp_path, name, [make(q, list(o), g) for q, o, g in rows], rows)
        assert (code, value) == (0, pytest.approx(truth)), (name, err[-500:])
        assert not any(mark in p for p in prompts for mark in ("{'", "['", "None")), name


NASTY: dict[str, tuple[Callable[[str, list[str], str], dict[str, Any]], str]] = {
    "no_answer": (lambda q, o, g: {k: v for k, v in _arc(q, o, g, list("ABCD")).items() if k != "answerKey"},
                  "no answer field"),
    "null_stem": (lambda q, o, g: {**_arc(q, o, g, list("ABCD")), "question": {
        "stem": None, "choices": _arc(q, o, g, list("ABCD"))["question"]["choices"]}}, "question.stem"),
    "null_option_text": (lambda q, o, g: {**_arc(q, o, g, list("ABCD")), "question": {
        "stem": q, "choices": [{"label": "A", "text": None}, *_arc(q, o, g, list("ABCD"))["question"]["choices"][1:]]}},
        "question.choices[0].text"),
    "stem_is_a_mapping": (lambda q, o, g: {**_arc(q, o, g, list("ABCD")), "question": {
        "stem": {"text": q}, "choices": _arc(q, o, g, list("ABCD"))["question"]["choices"]}}, "question.stem"),
    "key_not_a_label": (lambda q, o, g: _arc(q, o, g, list("ABCD"), key="F"), "'F'"),
    "duplicate_labels": (lambda q, o, g: _arc(q, o, g, list("AACD")), "not distinct"),
    "labels_shorter_than_texts": (lambda q, o, g: {"question": q, "choices": {"text": o, "label": list("ABC")},
                                                   "answerKey": "A"}, "choices.label"),
    "answer_a_list": (lambda q, o, g: {**_arc(q, o, g, list("ABCD")), "answerKey": ["A"]}, "answerKey"),
    "ambiguous_index_or_text": (lambda q, o, g: {"question": q, "choices": ["1", "2", "3", "4"], "answer": "1"},
                                "ambiguous"),
}


def test_nasty_rows_are_refused_naming_file_row_and_field(tmp_path: Path, rows: list[Row]) -> None:
    for name, (make, says) in NASTY.items():
        lines = [make(q, list(o), g) if i == 3 else _arc(q, list(o), g, list("ABCD"))
                 for i, (q, o, g) in enumerate(rows[:5])]
        code, value, err, prompts = _run(tmp_path, name, lines, rows)
        last = err.strip().splitlines()[-1]
        assert code == 2 and value is None and not prompts, name  # refused before any request
        assert last.startswith("error: ") and f"{name}.jsonl" in last and "line 4" in last and says in last, (name, last)
        assert "Traceback" not in err
