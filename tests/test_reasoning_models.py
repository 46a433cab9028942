"""Reasoning models end to end: a real HTTP server that answers as DeepSeek-R1 / Qwen3 / o-series
servers do (reasoning in `<think>` tags or in the message's `reasoning_content` / `reasoning`
field, candidate answers inside the thought, a share of replies cut off mid-thought by the token
limit) on real rows of C-Eval, GSM8K and MATH-500. The scores must equal the truth computed here,
item by item, from what the simulated model concluded: a thought is never read for an answer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from openai_server import OpenAIServer, Reply, last_user_message
from run_helpers import only_run, read_records, read_result, read_scores, read_summary, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Sample
from proctor.tasks import load_samples

pytestmark = needs_shared_data

# How the simulated model replies, and what each reply is worth in truth.
ANSWERED = ("tags", "tags_several", "reasoning_content", "reasoning", "thinking_parts", "closed_then_cut")
TRUNCATED = ("cut_in_tags", "cut_in_field", "cut_opened_only")
NO_ANSWER = ("nothing_after", "field_only")
STYLES = ANSWERED + TRUNCATED + NO_ANSWER


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def style_of(sample: Sample) -> str:
    return STYLES[_digest("style" + sample.id + sample.question) % len(STYLES)]


def is_right(sample: Sample) -> bool:
    return _digest(sample.question) % 3 != 0


class Answers:
    """One benchmark's answers: the conclusion the model states, and a different one."""

    def __init__(self, say: Callable[[str], str], gold: Callable[[Sample], str], other: Callable[[Sample], str]):
        self.say, self.gold, self.other = say, gold, other

    def concluded(self, sample: Sample) -> str:
        return self.gold(sample) if is_right(sample) else self.other(sample)

    def decoy(self, sample: Sample) -> str:
        """What the thought says: the opposite of the conclusion (the gold when it concludes wrong)."""
        return self.other(sample) if is_right(sample) else self.gold(sample)


def _letter_after(letter: str) -> str:
    return "ABCD"[("ABCD".index(letter) + 1) % 4]


CEVAL = Answers(lambda x: f"答案是{x}。", lambda s: str(s.target), lambda s: _letter_after(str(s.target)))
GSM8K = Answers(lambda x: f"The answer is \\boxed{{{x}}}.", lambda s: str(s.target).replace(",", ""),
                lambda s: str(int(str(s.target).replace(",", "")) + 1))
MATH = Answers(lambda x: f"So the final answer is $\\boxed{{{x}}}$.", lambda s: str(s.target), lambda s: "-98765")


class ReasoningServer:
    """The responder: finds the sample asked about, replies in its style."""

    def __init__(self, samples: list[Sample], answers: Answers) -> None:
        self.samples = {s.question.strip(): s for s in samples}
        self.answers = answers

    def sample_for(self, prompt: str) -> Sample:
        best = max((q for q in self.samples if q in prompt), key=lambda q: prompt.rfind(q))
        return self.samples[best]

    def __call__(self, body: dict[str, Any]) -> Reply:
        sample = self.sample_for(last_user_message(body))
        a = self.answers
        final = a.say(a.concluded(sample))
        decoy = a.say(a.decoy(sample))
        gold = a.say(a.gold(sample))  # a cut-off thought holds the right answer: reading it would score
        thought = f"Let me work it out. At first I thought: {decoy} Checking again..."
        style = style_of(sample)
        if style == "tags":
            return Reply(f"<think>{thought}</think>\n\n{final}")
        if style == "tags_several":
            return Reply(f"Hmm. {decoy}\n<THINK>{thought}</THINK> between: {decoy} <thinking>ok</thinking>{final}")
        if style == "reasoning_content":
            return Reply(final, fields=(("reasoning_content", thought),), reasoning_tokens=40)
        if style == "reasoning":
            return Reply(final, fields=(("reasoning", thought),), reasoning_tokens=30)
        if style == "thinking_parts":  # content parts, a thinking block first (as some gateways pass them)
            parts = [{"type": "thinking", "thinking": thought}, {"type": "text", "text": final}]
            return Reply(None, fields=(("content", parts),))
        if style == "closed_then_cut":
            return Reply(f"<think>{thought}</think>{final} And to double-check", finish_reason="length")
        if style == "cut_in_tags":
            return Reply(f"<think>{gold} Let me verify this step by", finish_reason="length")
        if style == "cut_in_field":
            return Reply(None, finish_reason="length", fields=(("reasoning_content", f"{gold} Let me verify"),),
                         reasoning_tokens=50)
        if style == "cut_opened_only":
            return Reply(f"<think>{gold}\n{decoy}", finish_reason="stop")  # never closed
        if style == "nothing_after":
            return Reply(f"<think>{gold}</think>\n")
        assert style == "field_only"
        return Reply(None, fields=(("reasoning", gold),))


def _truth(samples: list[Sample]) -> dict[str, Any]:
    correct = sum(1 for s in samples if style_of(s) in ANSWERED and is_right(s))
    return {
        "value": 100.0 * correct / len(samples),
        "truncated": sum(1 for s in samples if style_of(s) in TRUNCATED),
        "length": sum(1 for s in samples if style_of(s) == "closed_then_cut"),
        "no_answer": sum(1 for s in samples if style_of(s) in NO_ANSWER),
    }


def _check_run(run: Path, model: str, dataset_samples: dict[str, list[Sample]], answers: Answers) -> None:
    """Every dataset's result equals the truth; every item is scored as its style says."""
    for dataset, samples in dataset_samples.items():
        result = read_result(run, model, dataset)
        truth = _truth(samples)
        assert result["n"] == len(samples) and result["n_failed"] == 0, dataset
        assert result["value"] == pytest.approx(truth["value"]), dataset
        assert result["truncated"] == truth["truncated"] and result["length"] == truth["length"], dataset
        assert result["extra_metrics"]["truncated"] == pytest.approx(100.0 * truth["truncated"] / len(samples))
        scores = read_scores(run, model, dataset)
        records = {r["item_id"]: r for r in read_records(run, model, dataset)}
        for sample in samples:
            score, record, style = scores[sample.id], records[sample.id], style_of(sample)
            if style in TRUNCATED:
                assert (score["rule"], score["value"], score["answer"]) == ("truncated", 0.0, None), (dataset, style)
                assert record["reasoning_ended"] is False and record["output"] == ""
            elif style in NO_ANSWER:
                assert (score["rule"], score["value"], score["answer"]) == ("no_answer", 0.0, None), (dataset, style)
            else:
                assert score["value"] == (1.0 if is_right(sample) else 0.0), (dataset, style, score)
                # What is stored as the output is the answer part alone; the thought is kept apart.
                assert "think" not in record["output"].lower() and "At first" not in record["output"]
                assert "At first I thought" in record["reasoning"]


def _samples(benchmark: str, subject: str, split: str, limit: int) -> list[Sample]:
    return load_samples(benchmark, subject, split, str(SHARED_DATASETS))[:limit]


def test_gsm8k_and_math500_scores_are_the_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for benchmark, answers, limit in (("gsm8k", GSM8K, 40), ("math500", MATH, 30)):
        samples = _samples(benchmark, "", "test", limit)
        assert {style_of(s) for s in samples} == set(STYLES), benchmark  # every style is exercised
        with OpenAIServer(ReasoningServer(samples, answers), model_ids=["r1"]) as server:
            work = tmp_path / benchmark
            # A cut-off thought is the model's failure, not a failed request: exit code 0.
            assert main(run_args(server.base_url, work, [benchmark], limit)) == 0
        run = only_run(work)
        _check_run(run, "r1", {benchmark: samples}, answers)
        err = capsys.readouterr().err
        truth = _truth(samples)
        assert f"{truth['truncated']} of {limit} replies were cut off inside their reasoning" in err
        assert "--max-out-len" in err
        log = (run / "logs" / "r1" / f"{benchmark}.log").read_text(encoding="utf-8")
        assert "raise the answer budget with --max-out-len" in log
        assert "truncated" in read_summary(run)
        result = read_result(run, "r1", benchmark)
        # Usage as the server reported it: reasoning tokens where it said, completion tokens everywhere.
        said = [{"reasoning_content": 40, "reasoning": 30, "cut_in_field": 50}.get(style_of(s)) for s in samples]
        known = [x for x in said if x is not None]
        assert result["mean_reasoning_tokens"] == pytest.approx(sum(known) / len(known))
        assert result["mean_completion_tokens"] > 0
        assert result["extra_metrics"]["reasoning_tokens"] == result["mean_reasoning_tokens"]
        summary = read_summary(run)
        assert "completion_tokens" in summary and "reasoning_tokens" in summary


def test_ceval_scores_are_the_truth(tmp_path: Path) -> None:
    from proctor.tasks import get_spec

    subjects = [s.name for s in get_spec("ceval").subsets]
    per_subject = {f"ceval-{name}": _samples("ceval", name, "val", 2) for name in subjects}
    everything = [s for samples in per_subject.values() for s in samples]
    with OpenAIServer(ReasoningServer(everything, CEVAL), model_ids=["r1"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["ceval_gen"], 2)) == 0
    run = only_run(tmp_path)
    _check_run(run, "r1", per_subject, CEVAL)
    truth = _truth(everything)
    assert truth["truncated"] > 10  # a real share of the 104 replies is cut off
    total_truncated = sum(read_result(run, "r1", d)["truncated"] for d in per_subject)
    assert total_truncated == truth["truncated"]


def test_reasoning_settings_reach_the_request_and_the_cache_identity(tmp_path: Path) -> None:
    samples = _samples("gsm8k", "", "test", 3)
    config = tmp_path / "models.yaml"
    # A revision names the checkpoint, so its answers may be reused across runs (the test server
    # says nothing steady about it).
    model = {"type": "api", "abbr": "o", "model": "r1", "revision": "step-1000", "reasoning": True, "reasoning_effort": "high",
             "max_completion_tokens": True, "extra_body": {"chat_template_kwargs": {"enable_thinking": True}}}
    config.write_text(json.dumps({"models": [model], "datasets": ["gsm8k"]}), encoding="utf-8")
    with OpenAIServer(ReasoningServer(samples, GSM8K), model_ids=["r1"]) as server:
        model["api_base"] = server.base_url
        config.write_text(json.dumps({"models": [model], "datasets": ["gsm8k"]}), encoding="utf-8")
        cache = {"PROCTOR_CACHE_DIR": str(tmp_path / "cache")}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in cache.items():
                mp.setenv(k, v)
            assert main(["run", str(config), "--limit", "3", "--data-dir", str(SHARED_DATASETS),
                         "-w", str(tmp_path / "a")]) == 0
            body = server.post_requests()[0].json
            # The budget of a reasoning model, under the name o-series APIs want, and the settings.
            assert body["max_completion_tokens"] == 32768 and "max_tokens" not in body
            assert body["reasoning_effort"] == "high"
            assert body["chat_template_kwargs"] == {"enable_thinking": True}
            # Another effort is another model for the cache: every request is sent again.
            model["reasoning_effort"] = "low"
            config.write_text(json.dumps({"models": [model], "datasets": ["gsm8k"]}), encoding="utf-8")
            assert main(["run", str(config), "--limit", "3", "--data-dir", str(SHARED_DATASETS),
                         "-w", str(tmp_path / "b")]) == 0
            assert len(server.post_requests()) == 6
            assert server.post_requests()[-1].json["reasoning_effort"] == "low"
            # The same settings again: answered from the cache.
            assert main(["run", str(config), "--limit", "3", "--data-dir", str(SHARED_DATASETS),
                         "-w", str(tmp_path / "c")]) == 0
            assert len(server.post_requests()) == 6


def test_the_report_shows_cut_off_replies(tmp_path: Path) -> None:
    samples = _samples("gsm8k", "", "test", 20)
    with OpenAIServer(ReasoningServer(samples, GSM8K), model_ids=["r1"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["gsm8k"], 20)) == 0
    run = only_run(tmp_path)
    html = (run / "report.html").read_text(encoding="utf-8")
    truth = _truth(samples)
    assert "<th>truncated</th><th>cut by length</th>" in html
    assert f'scored 0">{truth["truncated"]}</td>' in html and f'by the token limit">{truth["length"]}</td>' in html
    from proctor.report.sample_view import decode_samples

    outputs = [r[3] for s in decode_samples(html)["sections"] for r in s["rows"]]
    assert any("[no answer: the reasoning never ended]" in o for o in outputs)


def test_reasoning_flags_give_the_budget_and_say_it_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = _samples("gsm8k", "", "test", 4) + _samples("math500", "", "test", 4)
    answers = {s.question.strip(): (GSM8K if s in samples[:4] else MATH) for s in samples}

    def responder(body: dict[str, Any]) -> Reply:
        prompt = last_user_message(body)
        question = max((q for q in answers if q in prompt), key=lambda q: prompt.rfind(q))
        return ReasoningServer(samples, answers[question])(body)

    with OpenAIServer(responder, model_ids=["r1"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["gsm8k", "math500"], 4,
                             "--reasoning", "--reasoning-effort", "low")) == 0
        bodies = [r.json for r in server.post_requests()]
    assert {b["max_tokens"] for b in bodies} == {32768} and {b["reasoning_effort"] for b in bodies} == {"low"}
    err = capsys.readouterr().err
    assert err.count("is a reasoning model: answers get up to 32768 tokens") == 1
    # An explicit budget wins, and nothing is said.
    with OpenAIServer(responder, model_ids=["r1"]) as server:
        assert main(run_args(server.base_url, tmp_path / "b", ["gsm8k"], 2, "--reasoning", "--max-out-len", "900")) == 0
        assert {r.json["max_tokens"] for r in server.post_requests()} == {900}
    assert "is a reasoning model" not in capsys.readouterr().err


def test_records_written_before_the_split_are_scored_the_same(tmp_path: Path) -> None:
    """Predictions of an older Proctor hold the raw output (`<think>` tags and all, no reasoning
    fields): `--mode eval` splits them with the same function and gets the same scores."""
    samples = _samples("gsm8k", "", "test", 40)
    tag_styles = {"tags", "tags_several", "closed_then_cut", "cut_in_tags", "cut_opened_only", "nothing_after"}
    with OpenAIServer(ReasoningServer(samples, GSM8K), model_ids=["r1"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["gsm8k"], 40)) == 0
    run = only_run(tmp_path)
    before = read_result(run, "r1", "gsm8k")
    path = run / "predictions" / "r1" / "gsm8k.jsonl"
    server_replies = ReasoningServer(samples, GSM8K)
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        sample = next(s for s in samples if s.id == record["item_id"])
        if style_of(sample) in tag_styles:  # as an older Proctor stored it: the raw text only
            reply = server_replies({"messages": record["prompt"]})
            record["output"] = reply.text
            for key in ("reasoning", "reasoning_ended", "reasoning_tokens"):
                record.pop(key, None)
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["run", "--mode", "eval", "-r", run.name, "-w", str(tmp_path), "--data-dir", str(SHARED_DATASETS)]) == 0
    after = read_result(run, "r1", "gsm8k")
    assert (after["value"], after["truncated"], after["length"]) == (before["value"], before["truncated"],
                                                                     before["length"])
    assert after["value"] == pytest.approx(_truth(samples)["value"])
