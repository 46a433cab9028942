"""Judged benchmarks end to end: a scripted model and a scripted judge (real HTTP servers) on the
real AlpacaEval 2, Arena-Hard and MT-Bench files. The judge's verdict on each question is fixed
by a table of this file (per question and per position of the model's answer), including
position-biased judges whose two orders disagree, replies without a verdict, replies cut off by
the token limit and replies that are only reasoning. Every expected number is computed here,
independently of Proctor's code: the benchmarks' verdict rules re-typed from their upstream code
(arena-hard-auto's get_score and label_to_score, FastChat's rating pattern, alpaca_eval's
position draw), the Bradley-Terry fit and the length-controlled GLM by scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply
from run_helpers import only_run, read_result, read_summary
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data
sklearn = pytest.importorskip("sklearn.linear_model")
np = pytest.importorskip("numpy")


def unpenalised(**kwargs: Any) -> Any:
    """scikit-learn's LogisticRegression without a penalty (spelled `C=inf` from 1.8 on)."""
    import sklearn as sk

    major, minor = (int(p) for p in sk.__version__.split(".")[:2])
    none = {"C": np.inf} if (major, minor) >= (1, 8) else {"penalty": None}
    return sklearn.LogisticRegression(**none, **kwargs)


def digest(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class Model:
    """Answers each user turn with a marked answer of a length drawn from the question."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}  # last user message -> the answer given

    def __call__(self, body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        words = 3 + digest("len", question) % 60
        answer = f"ANSWER#{digest(question) % 10**6}: " + " ".join(["word"] * words)
        self.answers[question] = answer
        return answer


# --------------------------------------------------------------------------- Arena-Hard
ARENA_KINDS = ["model_strong", "model", "tie", "base", "base_strong", "bias_a", "unparsed_one", "cut_one",
               "reasoning_only", "revised", "backup", "lt", "model", "base"]


def arena_kind(question: str) -> str:
    return ARENA_KINDS[digest("arena", question) % len(ARENA_KINDS)]


def arena_reply(kind: str, model_is: str) -> str | Reply:
    """The scripted judge's reply when the model's answer is assistant `model_is`."""
    other = "B" if model_is == "A" else "A"
    m, b = model_is, other
    table = {
        "model_strong": f"[[{m}>>{b}]]", "model": f"My final verdict: [[{m}>{b}]]", "tie": "[[A=B]]",
        "base": f"[[{b}>{m}]]", "base_strong": f"[[{b}>>{m}]]", "bias_a": "Assistant A is better: [[A>B]]",
        "unparsed_one": "I cannot decide between them." if model_is == "B" else "[[A>B]]",
        "revised": f"At first [[{b}>{m}]], but on reflection [[{m}>>{b}]]" if model_is == "B" else "[[A=B]]",
        "backup": f"Verdict: [{m}>{b}]" if model_is == "B" else f"[[{b}>{m}]]",
        "lt": f"[[{b}<{m}]]",
    }
    if kind == "cut_one":
        return Reply(f"Let me compare. [[{m}>{b}]] is tempting but", finish_reason="length") if model_is == "B" \
            else f"[[{m}>{b}]]"
    if kind == "reasoning_only":
        return Reply(None, reasoning_content=f"[[{m}>{b}]]") if model_is == "A" else f"[[{b}>{m}]]"
    return table[kind]


# arena-hard-auto show_result.py's label_to_score (weight 3), as the model's score when it is A.
LABEL_TO_SCORE = {"A>B": [1], "A>>B": [1] * 3, "A=B": [0.5], "A<<B": [0] * 3, "A<B": [0], "B>A": [0],
                  "B>>A": [0] * 3, "B=A": [0.5], "B<<A": [1] * 3, "B<A": [1]}


def upstream_get_score(judgment: str, patterns: list[str]) -> str | None:
    """arena-hard-auto gen_judgment.py get_score, re-typed."""
    for pattern in patterns:
        matches = [m for m in re.compile(pattern).findall(judgment.upper()) if m != ""]
        if matches:
            return matches[-1].strip("\n")
    return None


ARENA_PROMPT = re.compile(r"<\|User Prompt\|>\n(.*)\n\n<\|The Start of Assistant A's Answer\|>\n(.*)\n"
                          r"<\|The End of Assistant A's Answer\|>\n\n<\|The Start of Assistant B's Answer\|>\n(.*)\n"
                          r"<\|The End of Assistant B's Answer\|>\Z", re.S)


class Judge:
    """Judges Arena-Hard, AlpacaEval and MT-Bench prompts by the tables of this file."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> str | Reply:
        self.asked.append(body)
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
        user = body["messages"][-1]["content"]
        if user.startswith("<|User Prompt|>"):
            match = ARENA_PROMPT.match(user)
            assert match, user[:300]
            question, a, b = match.groups()
            assert ("ANSWER#" in a) != ("ANSWER#" in b), "exactly one answer is the model's"
            assert system.startswith("Please act as an impartial judge")
            return arena_reply(arena_kind(question), "A" if "ANSWER#" in a else "B")
        if '"model_identifier": "m"' in user:
            return alpaca_reply(user)
        return mt_bench_reply(system, user)


def arena_expected(questions: list[dict[str, Any]]) -> tuple[list[float], int]:
    """(the model's battle outcomes, questions dropped for an unparsed game), from the table."""
    patterns = [r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"]  # arena-hard-v0.1.yaml regex_patterns
    battles: list[float] = []
    dropped = 0
    for q in questions:
        kind = arena_kind(q["prompt"])
        labels = []
        for model_is in ("B", "A"):  # game 1: the baseline is A; game 2: the model is A
            reply = arena_reply(kind, model_is)
            if isinstance(reply, Reply):  # cut off by the token limit, or reasoning only: no verdict
                labels.append(None)
            else:
                labels.append(upstream_get_score(reply, patterns))
        if any(label not in LABEL_TO_SCORE for label in labels):
            dropped += 1
            continue
        g1, g2 = labels
        battles += LABEL_TO_SCORE[g2] + [1 - s for s in LABEL_TO_SCORE[g1]]  # show_result.py load_judgments
    return battles, dropped


def bt_win_rate(outcomes: list[float]) -> float:
    """A Bradley-Terry fit of model vs baseline by scikit-learn (ties: half a win, as rows of both
    outcomes): the model's predicted win probability against the baseline."""
    wins = sum(outcomes)
    X = np.array([[1.0], [1.0]])
    fit = unpenalised(fit_intercept=False, tol=1e-10, max_iter=1000)
    fit.fit(X, np.array([1, 0]), sample_weight=np.array([wins, len(outcomes) - wins]))
    return float(1 / (1 + math.exp(-fit.coef_[0][0])))


# --------------------------------------------------------------------------- AlpacaEval
ALPACA_KINDS = ["model", "baseline", "bias_M", "unparsed", "model", "baseline", "model"]


def alpaca_kind(instruction: str) -> str:
    return ALPACA_KINDS[digest("alpaca", instruction) % len(ALPACA_KINDS)]


ALPACA_OUTPUTS = re.compile(r'"instruction": """(.*)""",\n}.*"model_identifier": "m",\n        "output": """(.*)"""\n'
                            r'    },\n    {\n        "model_identifier": "M",\n        "output": """(.*)"""\n    }', re.S)


def alpaca_reply(user: str) -> str | Reply:
    match = ALPACA_OUTPUTS.search(user)
    assert match, user[-500:]
    instruction, first, second = match.groups()
    model_id = "m" if "ANSWER#" in first else "M"
    # The model's position is alpaca_eval's draw (RandomSwitchTwoColumnsProcessor, seed 123).
    switched = random.Random("is_switched_outputs" + instruction + "123").choices([False, True], k=1)[0]
    assert model_id == ("m" if switched else "M")
    kind = alpaca_kind(instruction)
    verdict = {"model": model_id, "baseline": "M" if model_id == "m" else "m", "bias_M": "M",
               "unparsed": "Output (a)"}[kind]
    return Reply(verdict, finish_reason="length")  # max_tokens 1: a whole verdict ends by the limit


def alpaca_expected(rows: list[dict[str, Any]], model: Model) -> tuple[list[float], list[int], list[int], int]:
    prefs, model_len, base_len, unparsed = [], [], [], 0
    for row in rows:
        kind = alpaca_kind(row["instruction"])
        if kind == "unparsed":
            unparsed += 1
            continue
        switched = random.Random("is_switched_outputs" + row["instruction"] + "123").choices([False, True], k=1)[0]
        model_id = "m" if switched else "M"
        prefs.append({"model": 1.0, "baseline": 0.0, "bias_M": 1.0 if model_id == "M" else 0.0}[kind])
        model_len.append(len(model.answers[row["instruction"]]))
        base_len.append(len(row["output"]))
    return prefs, model_len, base_len, unparsed


def lc_win_rate(prefs: list[float], model_len: list[int], base_len: list[int]) -> float:
    """AlpacaEval's length-controlled win rate by scikit-learn: logistic regression of the preference on
    tanh((len baseline - len model) / std), unpenalised, read at zero length difference."""
    delta = np.array(base_len, dtype=float) - np.array(model_len, dtype=float)
    x = np.tanh(delta / delta.std(ddof=1)).reshape(-1, 1)
    y = np.array(prefs)
    X = np.vstack([x, x])
    Y = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    weights = np.concatenate([y, 1 - y])  # alpaca_eval's fit of soft labels: each row twice
    fit = unpenalised(tol=1e-10, max_iter=10000).fit(X, Y, sample_weight=weights)
    return 100 / (1 + math.exp(-fit.intercept_[0]))


# --------------------------------------------------------------------------- MT-Bench
def mt_rating_text(question_1: str, turn: int) -> str | Reply:
    kind = digest("mt", question_1, turn) % 13
    if kind == 10:
        return "The answer is fine but I give no score."
    if kind == 11:
        return "Rating: [[11]]"  # outside the scale: unparsed
    if kind == 12:
        return Reply("Rating: [[", finish_reason="length")
    if kind == 9:
        return "Rating: [6]"  # FastChat's backup pattern
    if kind == 8:
        return "First [[4]], later [[9]]"  # FastChat reads the first
    return f"Explanation.\nRating: [[{kind + 1}]]"


MT_SINGLE = re.compile(r"\[Question\]\n(.*?)\n\n(?:\[The Start of Reference Answer\]\n(.*)\n\[The End of Reference Answer\]\n\n)?"
                       r"\[The Start of Assistant's Answer\]\n(.*)\n\[The End of Assistant's Answer\]\Z", re.S)
MT_MULTI = re.compile(r"(?:<\|The Start of Reference Answer\|>.*<\|The End of Reference Answer\|>\n\n\n)?"
                      r"<\|The Start of Assistant A's Conversation with User\|>\n\n### User:\n(.*?)\n\n### Assistant A:\n",
                      re.S)


def mt_bench_reply(system: str, user: str) -> str | Reply:
    single = MT_SINGLE.search(user)
    if single:
        question = single.group(1)
        return mt_rating_text(question, 1)
    multi = MT_MULTI.search(user)
    assert multi, user[:400]
    assert "focus on the assistant's answer to the second" in system
    return mt_rating_text(multi.group(1), 2)


def mt_expected(questions: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratings FastChat would read from the table: the first `[[n]]`, else the first `[n]`;
    unparsed (no rating, outside 1-10, cut off) left out."""
    per_turn: dict[int, list[float]] = {1: [], 2: []}
    per_category: dict[str, list[float]] = {}
    unparsed = 0
    for q in questions:
        for turn in (1, 2):
            reply = mt_rating_text(q["turns"][0], turn)
            found = None if isinstance(reply, Reply) else (re.search(r"\[\[(\d+\.?\d*)\]\]", reply)
                                                          or re.search(r"\[(\d+\.?\d*)\]", reply))
            rating = float(found.group(1)) if found else None
            if rating is None or not 1 <= rating <= 10:
                unparsed += 1
                continue
            per_turn[turn].append(rating)
            per_category.setdefault(q["category"], []).append(rating)
    return {"turns": per_turn, "categories": per_category, "unparsed": unparsed}


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values))


# --------------------------------------------------------------------------- the runs
def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _argv(model: OpenAIServer, judge: OpenAIServer, work: Path, datasets: list[str], *extra: str) -> list[str]:
    return ["run", "--api-base", model.base_url, "--datasets", *datasets, "--data-dir", str(SHARED_DATASETS),
            "-w", str(work), "--judge-api-base", judge.base_url, "--max-concurrency", "8", *extra]


ARENA_N, ALPACA_N = 42, 70


def test_judged_benchmarks_give_the_numbers_computed_independently(tmp_path: Path) -> None:
    model, judge = Model(), Judge()
    with OpenAIServer(model, model_ids=["m"]) as m, OpenAIServer(judge, model_ids=["judge-model"]) as j:
        assert main(_argv(m, j, tmp_path / "arena", ["arena_hard"], "--limit", str(ARENA_N))) == 0
        assert main(_argv(m, j, tmp_path / "alpaca", ["alpaca_eval2"], "--limit", str(ALPACA_N))) == 0
        assert main(_argv(m, j, tmp_path / "mt", ["mt_bench"])) == 0
        judged = len(j.post_requests())
    runs = [only_run(tmp_path / name) for name in ("arena", "alpaca", "mt")]

    # Arena-Hard: both orders per question; the BT score and its bootstrap interval.
    questions = _jsonl(SHARED_DATASETS / "arena_hard/data/arena-hard-v0.1/question.jsonl")[:ARENA_N]
    battles, dropped = arena_expected(questions)
    assert 0 < dropped < ARENA_N and any(arena_kind(q["prompt"]) == "bias_a" for q in questions)
    arena = read_result(runs[0], "m", "arena_hard")
    assert arena["metric"] == "arena_score" and arena["n"] == ARENA_N - dropped
    assert arena["value"] == pytest.approx(100 * bt_win_rate(battles), abs=1e-6)
    assert arena["extra_metrics"]["battles"] == len(battles)
    assert arena["extra_metrics"]["judge_unparsed"] == pytest.approx(100 * dropped / ARENA_N)
    rng = np.random.default_rng(0)
    boot = [np.mean(rng.choice(battles, size=len(battles), replace=True)) for _ in range(4000)]
    low, high = np.percentile(boot, [2.5, 97.5]) * 100
    assert arena["extra_metrics"]["ci95_low"] == pytest.approx(low, abs=2.5)
    assert arena["extra_metrics"]["ci95_high"] == pytest.approx(high, abs=2.5)
    assert arena["extra_metrics"]["ci95_low"] < arena["value"] < arena["extra_metrics"]["ci95_high"]
    assert arena["extra_metrics"]["judge_requests"] == 2 * ARENA_N  # the judge's cost: every game once

    # AlpacaEval 2: one game per instruction, the win rate and the length-controlled win rate.
    rows = json.loads((SHARED_DATASETS / "alpaca_eval/results/gpt4_1106_preview/model_outputs.json").read_text())
    prefs, model_len, base_len, unparsed = alpaca_expected(rows[:ALPACA_N], model)
    alpaca = read_result(runs[1], "m", "alpaca_eval2")
    assert alpaca["metric"] == "lc_win_rate" and alpaca["n"] == len(prefs) and unparsed > 0
    assert alpaca["extra_metrics"]["win_rate"] == pytest.approx(100 * sum(prefs) / len(prefs))
    assert alpaca["extra_stderrs"]["win_rate"] == pytest.approx(100 * statistics.stdev(prefs) / math.sqrt(len(prefs)))
    assert alpaca["value"] == pytest.approx(lc_win_rate(prefs, model_len, base_len), abs=1e-4)
    assert alpaca["value"] != pytest.approx(alpaca["extra_metrics"]["win_rate"], abs=0.5)  # the length term matters
    assert alpaca["extra_metrics"]["judge_unparsed"] == pytest.approx(100 * unparsed / ALPACA_N)

    # MT-Bench: 80 two-turn conversations, each turn rated; means per turn, per category, overall.
    mt_questions = _jsonl(SHARED_DATASETS / "mt_bench/fastchat/llm_judge/data/mt_bench/question.jsonl")
    want = mt_expected(mt_questions)
    mt = read_result(runs[2], "m", "mt_bench")
    every = want["turns"][1] + want["turns"][2]
    assert mt["metric"] == "mt_bench_score" and mt["n"] == len(every)
    assert mt["value"] == pytest.approx(statistics.mean(every)) and mt["stderr"] == pytest.approx(_se(every))
    for turn in (1, 2):
        assert mt["extra_metrics"][f"turn_{turn}"] == pytest.approx(statistics.mean(want["turns"][turn]))
        assert mt["extra_stderrs"][f"turn_{turn}"] == pytest.approx(_se(want["turns"][turn]))
    for category, values in want["categories"].items():
        assert mt["extra_metrics"][f"category={category}"] == pytest.approx(statistics.mean(values))
    assert mt["extra_metrics"]["judge_unparsed"] == pytest.approx(100 * want["unparsed"] / 160)
    # The reference answer went to the judge for exactly the math, reasoning and coding turns.
    with_ref = [b for b in judge.asked if "Reference" in b["messages"][-1]["content"]]
    assert len(with_ref) == 2 * sum(q["category"] in ("math", "reasoning", "coding") for q in mt_questions) == 60
    assert judged == 2 * ARENA_N + ALPACA_N + 160
    summary = read_summary(runs[2])
    assert re.search(r"mt_bench\s+\w+\+j[0-9a-f]{4}\s+mt_bench_score", summary)  # the judge is in the version


def test_sigkill_while_judging_then_resume_asks_only_unjudged_games(tmp_path: Path) -> None:
    work = tmp_path / "killed"
    model, judge = Model(), Judge()
    with OpenAIServer(model, model_ids=["m"]) as m, OpenAIServer(judge, model_ids=["judge-model"], latency=0.05) as j:
        argv = _argv(m, j, work, ["arena_hard"], "--limit", "30", "--no-cache")
        proc = subprocess.Popen([sys.executable, "-m", "proctor", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while not any(len(p.read_bytes().splitlines()) >= 12 for p in work.glob("*/judgements/m/arena_hard.j*.jsonl")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the judge was never asked"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while any(r.done is None for r in j.requests):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        run = only_run(work)
        judged = {r["item_id"] for r in _jsonl(next(run.glob("judgements/m/arena_hard.j*.jsonl"))) if r["error"] is None}
        answered_before, asked_before = len(m.post_requests()), len(j.post_requests())
        assert 12 <= len(judged) < 60
        assert main(argv + ["-r", "latest"]) == 0
        again = j.post_requests()[asked_before:]
        assert len(m.post_requests()) == answered_before  # every answer was on disk: none asked again
    games = {f"{q['uid']}@{g}" for q in _jsonl(SHARED_DATASETS / "arena_hard/data/arena-hard-v0.1/question.jsonl")[:30]
             for g in ("g1", "g2")}
    assert len(again) == len(games - judged)  # only the games without a reply were sent
    result = read_result(run, "m", "arena_hard")
    battles, dropped = arena_expected(_jsonl(SHARED_DATASETS / "arena_hard/data/arena-hard-v0.1/question.jsonl")[:30])
    assert result["value"] == pytest.approx(100 * sum(battles) / len(battles)) and result["n"] == 30 - dropped
    # The same numbers as a run never killed (same bootstrap too).
    with OpenAIServer(Model(), model_ids=["m"]) as m, OpenAIServer(Judge(), model_ids=["judge-model"]) as j:
        assert main(_argv(m, j, tmp_path / "whole", ["arena_hard"], "--limit", "30", "--no-cache")) == 0
    whole = read_result(only_run(tmp_path / "whole"), "m", "arena_hard")
    assert {k: whole[k] for k in ("value", "stderr", "n", "extra_metrics")} == \
        {k: result[k] for k in ("value", "stderr", "n", "extra_metrics")}


def test_a_judged_benchmark_without_a_judge_is_refused_in_one_line(tmp_path: Path, capsys: Any) -> None:
    code = main(["run", "--api-base", "http://127.0.0.1:9/v1", "--datasets", "mt_bench", "--data-dir",
                 str(SHARED_DATASETS), "-w", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "mt_bench is scored by a judge" in err[0] and "--judge-api-base" in err[0] and "gpt-4" in err[0]


def test_another_judge_is_asked_everything_the_same_judge_nothing(tmp_path: Path) -> None:
    work = tmp_path / "w"
    with OpenAIServer(Model(), model_ids=["m"]) as m, OpenAIServer(Judge(), model_ids=["judge-a"]) as a, \
            OpenAIServer(Judge(), model_ids=["judge-b"]) as b:
        assert main(_argv(m, a, work, ["arena_hard"], "--limit", "6")) == 0
        assert len(a.post_requests()) == 12
        rescore = ["run", "-w", str(work), "-r", "latest", "--mode", "eval", "--data-dir", str(SHARED_DATASETS)]
        assert main([*rescore, "--judge-api-base", a.base_url]) == 0
        assert len(a.post_requests()) == 12  # the same judge: its replies are on disk
        assert main([*rescore, "--judge-api-base", b.base_url, "--no-cache"]) == 0
        assert len(b.post_requests()) == 12  # another judge: none of judge-a's replies is its verdict


def test_sigkill_while_answering_mt_bench_then_resume_gives_the_same_numbers(tmp_path: Path) -> None:
    work = tmp_path / "killed"
    with OpenAIServer(Model(), model_ids=["m"], latency=0.03) as m, OpenAIServer(Judge(), model_ids=["judge-model"]) as j:
        argv = _argv(m, j, work, ["mt_bench"], "--limit", "20", "--no-cache", "--max-concurrency", "2")
        proc = subprocess.Popen([sys.executable, "-m", "proctor", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while not any(len(p.read_bytes().splitlines()) >= 25 for p in work.glob("*/predictions/m/mt_bench.jsonl")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while any(r.done is None for r in m.requests):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        run = only_run(work)
        done = {r["item_id"] for r in _jsonl(run / "predictions/m/mt_bench.jsonl") if r["error"] is None}
        before = len(m.post_requests())
        assert main(argv + ["-r", "latest"]) == 0
        resent = len(m.post_requests()) - before
    assert 25 <= len(done) < 40 and resent == 40 - len(done)  # only the turns without a record
    result = read_result(run, "m", "mt_bench")
    with OpenAIServer(Model(), model_ids=["m"]) as m, OpenAIServer(Judge(), model_ids=["judge-model"]) as j:
        assert main(_argv(m, j, tmp_path / "whole", ["mt_bench"], "--limit", "20", "--no-cache")) == 0
    whole = read_result(only_run(tmp_path / "whole"), "m", "mt_bench")
    assert {k: whole[k] for k in ("value", "stderr", "n", "extra_metrics", "extra_stderrs")} == \
        {k: result[k] for k in ("value", "stderr", "n", "extra_metrics", "extra_stderrs")}


def weighted_p(instruction: str) -> float | None:
    """The scripted judge's P(model's identifier) for an instruction (None: it sends no log-probs)."""
    draw = digest("p", instruction) % 10
    return None if draw == 0 else draw / 10.5


def test_alpaca_eval_reads_the_weighted_preference_from_the_judges_logprobs(tmp_path: Path) -> None:
    model = Model()
    bodies: list[dict[str, Any]] = []

    def judge(body: dict[str, Any]) -> Reply:
        bodies.append(body)
        instruction, first, _ = ALPACA_OUTPUTS.search(body["messages"][-1]["content"]).groups()  # type: ignore[union-attr]
        model_id, other = ("m", "M") if "ANSWER#" in first else ("M", "m")
        p = weighted_p(instruction)
        if p is None:  # no m/M among the alternatives: the token itself is the verdict
            return Reply(other, finish_reason="length", top_logprobs=(("The", -0.1),))
        top = ((model_id, math.log(p)), (other, math.log(1 - p) - 0.05), ("Both", -9.0))
        return Reply(model_id if p > 0.5 else other, finish_reason="length", top_logprobs=top)

    with OpenAIServer(model, model_ids=["m"]) as m, OpenAIServer(judge, model_ids=["judge-model"]) as j:
        assert main(_argv(m, j, tmp_path / "w", ["alpaca_eval2"], "--limit", "40")) == 0
    assert all(b["logprobs"] is True and b["top_logprobs"] == 5 and b["max_tokens"] == 1 for b in bodies)
    rows = json.loads((SHARED_DATASETS / "alpaca_eval/results/gpt4_1106_preview/model_outputs.json").read_text())[:40]
    prefs = []
    for row in rows:  # alpaca_eval's logprob_parser: P(model) / (P(m) + P(M))
        p = weighted_p(row["instruction"])
        prefs.append(0.0 if p is None else p / (p + math.exp(math.log(1 - p) - 0.05)))
    result = read_result(only_run(tmp_path / "w"), "m", "alpaca_eval2")
    assert result["extra_metrics"]["win_rate"] == pytest.approx(100 * statistics.mean(prefs))
    lengths = [len(model.answers[r["instruction"]]) for r in rows], [len(r["output"]) for r in rows]
    assert result["value"] == pytest.approx(lc_win_rate(prefs, *lengths), abs=1e-4)
