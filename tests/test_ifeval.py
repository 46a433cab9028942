"""IFEval: the real 541 rows, the `ifeval` scorer (answer split, refusals of bad rows, a missing
extra), the four scores, and a run end to end against the real test server with scripted replies
whose verdicts are worked out by hand below."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Withheld, last_user_message
from run_helpers import only_run, read_result, read_scores, read_summary, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Item, Record, Sample, Score
from proctor.errors import ConfigError, DataError
from proctor.metrics import ifeval_result
from proctor.scoring import get_scorer
from proctor.scoring.ifeval import CHECKERS, instructions_of
from proctor.tasks import builtin_specs, load_samples

DATA = SHARED_DATASETS / "ifeval" / "instruction_following_eval" / "data" / "input_data.jsonl"


def _sample(ids: list[str], kwargs: list[Any], sid: str = "7") -> Sample:
    return Sample(sid, "prompt", None, fields={"instruction_id_list": ids, "kwargs": kwargs})


def _record(output: str | None, **more: Any) -> Record:
    return Record(item_id="7", prompt=None, output=output, loglikelihoods=None, **more)


# ---------------------------------------------------------------- the real rows


@needs_shared_data
def test_the_real_rows_load_and_every_instruction_has_a_checker() -> None:
    samples = load_samples("ifeval", "", "test", str(SHARED_DATASETS))
    raw = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(samples) == len(raw) == 541
    assert builtin_specs()["ifeval"].description.startswith("IFEval: 541 prompts")  # what `proctor list` shows
    assert [s.id for s in samples] == [str(r["key"]) for r in raw]
    assert all(s.target is None and s.question == r["prompt"] for s, r in zip(samples, raw))
    ids = {i for r in raw for i in r["instruction_id_list"]}
    assert ids == set(CHECKERS) and len(ids) == 25
    # Every row's arguments fit its checkers (a row that did not would be refused, never guessed).
    assert sum(len(instructions_of(s)) for s in samples) == 834


# ---------------------------------------------------------------- the scorer


def test_only_the_answer_is_checked_and_a_cut_thought_fails_everything() -> None:
    scorer = get_scorer("ifeval")
    sample = _sample(["punctuation:no_comma", "startend:quotation"], [{}, {}])
    thought = "<think>Well, commas, commas.</think>\n\n\"No commas at all.\""
    score = scorer.score(sample, _record(thought))
    assert (score.value, score.answer, score.rule) == (1.0, '"No commas at all."', "followed")
    assert score.extra == {"instructions": ["punctuation:no_comma", "startend:quotation"], "strict": [True, True],
                           "loose": [True, True]}
    # The thought in the server's reasoning field is not checked either.
    assert scorer.score(sample, _record('"Fine."', reasoning="Hmm, a comma.")).value == 1.0
    cut = scorer.score(sample, _record("<think>\"No commas\" is what I will", finish_reason="length"))
    assert (cut.value, cut.answer, cut.rule) == (0.0, None, "truncated")
    assert cut.extra["strict"] == cut.extra["loose"] == [False, False]
    loose_only = scorer.score(sample, _record('Sure, here:\n"No commas at all."'))
    assert (loose_only.value, loose_only.extra["strict"], loose_only.extra["loose"]) == (0.0, [False, False],
                                                                                          [True, True])
    assert loose_only.explanation == ("not followed: punctuation:no_comma, startend:quotation; "
                                      "loosely not followed: none")


@pytest.mark.parametrize(
    ("ids", "kwargs", "message"),
    [
        (["punctuation:no_coma"], [{}], r"sample 7 instruction 1: unknown IFEval instruction 'punctuation:no_coma'.*"
                                        "no_comma"),
        (["keywords:frequency"], [{"keyword": "x", "relation": "at least"}], "needs the argument 'frequency'"),
        (["keywords:frequency"], [{"keyword": "x", "frequency": "2", "relation": "at least"}],
         "'frequency' must be int, got str '2'"),
        (["keywords:frequency"], [{"keyword": "x", "frequency": 2, "relation": "around"}],
         "'relation' must be one of 'less than' or 'at least', got 'around'"),
        (["punctuation:no_comma"], [{"num_words": 3}], "takes no argument 'num_words'"),
        (["punctuation:no_comma"], [], "one object per instruction"),
    ],
)
def test_rows_the_checkers_cannot_read_are_refused(ids: list[str], kwargs: list[Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        get_scorer("ifeval").score(_sample(ids, kwargs), _record("text"))


def test_null_arguments_are_dropped_as_in_the_hugging_face_copy() -> None:
    sample = _sample(["punctuation:no_comma"], [{"num_words": None, "keywords": None}])
    assert get_scorer("ifeval").score(sample, _record("No commas.")).value == 1.0


def test_a_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from proctor.scoring.ifeval import text

    monkeypatch.setitem(sys.modules, "langdetect.detector_factory", None)  # import fails
    text._language_factory.cache_clear()
    try:
        sample = _sample(["language:response_language"], [{"language": "fr"}])
        with pytest.raises(ConfigError, match=r"needs the package 'langdetect': pip install 'proctor\[ifeval\]'$"):
            get_scorer("ifeval").score(sample, _record("Bonjour tout le monde."))
    finally:
        text._language_factory.cache_clear()


# ---------------------------------------------------------------- the four scores


def test_four_scores_from_verdicts_worked_out_by_hand() -> None:
    items = [Item(f"s{i}", _sample(["a"] * n, [{}] * n, f"s{i}"), f"s{i}") for i, n in enumerate([2, 1, 3, 1])]
    scores = {
        "s0": Score(0.0, "x", extra={"strict": [True, False], "loose": [True, True]}),
        "s1": Score(1.0, "x", extra={"strict": [True], "loose": [True]}),
        "s2": Score(0.0, None, "content_filter"),  # withheld: its 3 instructions all fail
        # s3 failed: no score, counted in n_failed
    }
    result = ifeval_result(items, scores, "m", "ifeval")
    # prompts: s0 strict no / loose yes, s1 yes / yes, s2 no / no -> 1/3 strict, 2/3 loose
    # instructions: 2 + 1 + 3 = 6; strict right 1 + 1 = 2, loose right 2 + 1 = 3
    assert (result.metric, result.n, result.n_failed) == ("prompt_level_strict_acc", 3, 1)
    assert result.value == pytest.approx(100 / 3)
    assert result.extra_metrics == pytest.approx(
        {"inst_level_strict_acc": 100 * 2 / 6, "prompt_level_loose_acc": 100 * 2 / 3, "inst_level_loose_acc": 50.0})


# ---------------------------------------------------------------- end to end

REPEAT_1012 = ("Write an email to my boss telling him that I am quitting. The email must contain a title wrapped in "
               "double angular brackets, i.e. <<title>>.")

# The first 12 rows of the real file: a scripted reply for each, and its verdicts by hand
# (strict, loose), one per instruction, in the row's order.
SCRIPT: dict[str, tuple[Any, list[bool], list[bool]]] = {
    # no_comma (a comma in the first line only), 3 highlights, >= 300 words (5 + 5 + 300)
    "1000": ("Sure, here is a summary:\n*Early life* *Regency* *Later years*\n" + " ".join(["word"] * 300),
             [False, True, True], [True, True, True]),
    "1001": ("Good morrow. Thy journey begins in Tokyo.", [True], [True]),  # no comma
    "1005": (" ".join(f"[{c}]" for c in "abcdefghijk"), [False], [False]),  # 11 placeholders, not 12
    "1012": (REPEAT_1012 + "\n<<Farewell>>\nDear boss, I quit.", [True, True], [True, True]),  # repeat, title
    "1019": ("what are the two young boys with the toy guns and the horns going to play today?", [True], [True]),
    "102": ("* Gown: Are you ready?\n* Sweats: Almost.\n* Gown: Then let us go.", [True], [True]),  # 3 bullets
    # capitals + 2 PARAGRAPH marks in the answer; the lower-case thought is not checked
    "1021": ("<think>let me plan the critique, in lower case for now.</think>\n\nPARAGRAPH 1\nTHE LAW IS NOT ALWAYS "
             "JUST AND PEOPLE KNOW IT.\nPARAGRAPH 2\nCIVIL DISOBEDIENCE HAS A LONG AND PROUD HISTORY.",
             [True, True], [True, True]),
    # a thought that never closed: no answer, all three instructions fail
    "1040": ("<think>I should write a resume with SKILLS and", [False, False, False], [False, False, False]),
    "1051": (Withheld("content_filter"), [False], [False]),  # withheld by the server: fails
    # keywords yes, 9 words (not >= 500), no comma
    "1069": ("We are experiencing growth that is correlated with effort.", [True, False, True], [True, False, True]),
    "1072": (" ".join(["sleep"] * 400), [True], [True]),  # exactly 400 words
    "1075": ('```json\n{"product": "diaper", "comfort": "high"}\n```', [True], [True]),
}


@needs_shared_data
def test_ifeval_end_to_end(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[:12]]
    by_prompt = {r["prompt"]: str(r["key"]) for r in rows}
    assert list(by_prompt.values()) == list(SCRIPT)

    def reply(body: dict[str, Any]) -> Any:
        return SCRIPT[by_prompt[last_user_message(body)]][0]

    with OpenAIServer(reply, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["ifeval"], 12)) == 0
        bodies = [r.json for r in server.post_requests()]
    first = next(b for b in bodies if last_user_message(b) == rows[0]["prompt"])
    assert first["messages"] == [{"role": "user", "content": rows[0]["prompt"]}]  # the prompt alone, zero-shot
    assert first["max_tokens"] == 1280 and not first.get("stop")

    # The four scores, from the hand verdicts above.
    strict = [v for _, v, _ in SCRIPT.values()]
    loose = [v for _, _, v in SCRIPT.values()]
    assert sum(map(all, strict)) == 7 and sum(map(all, loose)) == 8
    assert sum(map(len, strict)) == 20 and sum(map(sum, strict)) == 13 and sum(map(sum, loose)) == 14
    run = only_run(tmp_path)
    result = read_result(run, "m", "ifeval")
    assert (result["metric"], result["n"], result["n_failed"]) == ("prompt_level_strict_acc", 12, 0)
    assert result["value"] == pytest.approx(100 * 7 / 12)
    extra = result["extra_metrics"]
    assert extra["inst_level_strict_acc"] == pytest.approx(100 * 13 / 20)
    assert extra["prompt_level_loose_acc"] == pytest.approx(100 * 8 / 12)
    assert extra["inst_level_loose_acc"] == pytest.approx(100 * 14 / 20)

    scores = read_scores(run, "m", "ifeval")
    # A withheld answer and a cut-off thought never reach the scorer: 0, and all their
    # instructions count as not followed (the metric reads their count from the row).
    assert scores["1051"]["rule"] == "content_filter"
    assert scores["1040"]["rule"] == "truncated" and scores["1040"]["answer"] is None
    for key, (_, want_strict, want_loose) in SCRIPT.items():
        if key not in ("1040", "1051"):
            assert (scores[key]["extra"]["strict"], scores[key]["extra"]["loose"]) == (want_strict, want_loose), key
    assert scores["1021"]["answer"].startswith("PARAGRAPH 1\n")
    summary = read_summary(run)
    for name, value in [("prompt_level_strict_acc", 100 * 7 / 12), ("inst_level_strict_acc", 65.0),
                        ("prompt_level_loose_acc", 100 * 8 / 12), ("inst_level_loose_acc", 70.0)]:
        row = next(line for line in summary.splitlines() if name in line)
        assert f"{value:.2f}" in row, row


def test_proctor_list_shows_ifeval_with_its_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "datasets"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ifeval"))
    assert row.split("\t")[:3] == ["ifeval", "free-form, gen", "ifeval"]
    assert row.split("\t")[3].startswith("IFEval: 541 prompts with verifiable instructions")


@needs_shared_data
def test_a_base_model_gets_the_bare_prompt_and_no_stop_sequence(tmp_path: Path) -> None:
    # A blank-line stop (the free-form default for base models) would cut every multi-paragraph answer.
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[:2]]
    with OpenAIServer(lambda body: "Fine.\n\nMore text.", model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["ifeval"], 2, "--api-type", "completions")) == 0
        bodies = sorted((r.json for r in server.post_requests()), key=lambda b: b["prompt"])
    assert [b["prompt"] for b in bodies] == sorted(r["prompt"] for r in rows)
    assert all(b["max_tokens"] == 1280 and not b.get("stop") for b in bodies)


@needs_shared_data
def test_a_run_without_the_extra_stops_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from proctor.scoring.ifeval import text

    monkeypatch.setitem(sys.modules, "langdetect.detector_factory", None)
    text._language_factory.cache_clear()
    try:
        # Row 5 (key 1019) asks for lower case English: a lower-case reply needs the language check.
        with OpenAIServer(lambda body: "all lower case english words here.", model_ids=["m"]) as server:
            assert main(run_args(server.base_url, tmp_path, ["ifeval"], 5)) == 2
    finally:
        text._language_factory.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: the IFEval checker for the response language needs the package 'langdetect': "
                       "pip install 'proctor[ifeval]'")
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("scorer", ["exact", "cascade"])
def test_a_scorer_that_needs_answers_is_refused_for_ifeval(scorer: str) -> None:
    from proctor.config.schema import DatasetConfig
    from proctor.tasks.resolve import resolve_task

    # `--judge` (cascade) or a config's `scorer: exact` on rows without answers would compare with None.
    with pytest.raises(ConfigError, match=f"dataset ifeval: its rows have no answers, so scorer '{scorer}'"):
        resolve_task(DatasetConfig(abbr="ifeval", benchmark="ifeval", scorer=scorer))
    assert resolve_task(DatasetConfig(abbr="ifeval", benchmark="ifeval", scorer="ifeval")).scorer == "ifeval"
