"""Red team: a stand-in reasoning server of its own (other placements and shapes than
test_reasoning_models.py) on real rows of C-Eval val, GSM8K and MATH-500, the truth computed
here from the raw files; scores, truncated counts and exit codes must match, and `--mode eval`
and `-r` must not change them."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from openai_server import OpenAIServer, Reply, last_user_message
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data

# (style, what it is worth): "A" answered (scored by its conclusion), "L" answered but cut by
# length after the thought closed, "T" truncated, "N" nothing after the thought.
STYLES: dict[str, str] = {
    "head_and_blocks": "A",  # text before the first block, <THINKING> caps, a second <think> block
    "orphan_close": "A",  # the template opened the thought (DeepSeek-R1): only "</think>" in the output
    "fake_close_in_code": "A",  # the thought quotes "</think>" in a code block, then really closes
    "field_content_ws": "A",  # reasoning_content, content with leading blank lines
    "reasoning_field": "A",  # `reasoning`
    "harmony": "A",  # gpt-oss channels passed through
    "closed_then_cut": "L",
    "harmony_cut": "T",  # the analysis channel cut by length, no final
    "unclosed_caps": "T",  # <THINK> never closed, finish stop
    "second_block_open": "T",  # one closed block, then a second that never closes
    "field_null_length": "T",  # reasoning_content only, content null, length
    "field_null_stop": "N",  # reasoning only, content null, stop: no answer (not withheld)
    "empty_after": "N",  # closed thought, blank answer
}
NAMES = list(STYLES)


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def style_of(question: str) -> str:
    return NAMES[_h("rt-style" + question) % len(NAMES)]


def right(question: str) -> bool:
    return _h("rt-right" + question) % 5 < 3


class Bench:
    """Rows of one benchmark: question -> gold; how the model states an answer; a wrong one."""

    def __init__(self, rows: dict[str, str], say: Callable[[str], str], wrong: Callable[[str], str]):
        self.rows, self.say, self.wrong = rows, say, wrong

    def find(self, prompt: str) -> str:
        return max((q for q in self.rows if q in prompt), key=lambda q: (prompt.rfind(q), len(q)))


def _ceval_rows(subject: str, n: int) -> dict[str, str]:
    with open(SHARED_DATASETS / "ceval" / "val" / f"{subject}_val.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return {r["question"].strip(): r["answer"].strip() for r in rows}


def _jsonl(path: Path, n: int) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def gsm8k(n: int) -> Bench:
    rows = _jsonl(SHARED_DATASETS / "gsm8k/grade_school_math/data/test.jsonl", n)
    gold = {r["question"].strip(): r["answer"].split("####")[-1].strip().replace(",", "") for r in rows}
    return Bench(gold, lambda x: f"Therefore the answer is {x}.", lambda g: str(int(g) + 7))


def math500(n: int) -> Bench:
    rows = _jsonl(SHARED_DATASETS / "math500/prm800k/math_splits/test.jsonl", n)
    gold = {r["problem"].strip(): r["answer"].strip() for r in rows}
    return Bench(gold, lambda x: f"Final answer: $\\boxed{{{x}}}$", lambda g: "-4242")


def ceval(subjects: list[str], n: int) -> Bench:
    gold: dict[str, str] = {}
    for s in subjects:
        gold.update(_ceval_rows(s, n))
    return Bench(gold, lambda x: f"答案：{x}", lambda g: "ABCD"[("ABCD".index(g) + 2) % 4])


def reply(bench: Bench, body: dict[str, Any]) -> Reply:
    q = bench.find(last_user_message(body))
    gold = bench.rows[q]
    concluded = gold if right(q) else bench.wrong(gold)
    decoy = bench.wrong(gold) if right(q) else gold
    final, d, g = bench.say(concluded), bench.say(decoy), bench.say(gold)
    style = style_of(q)
    if style == "head_and_blocks":
        return Reply(f"{d}\n<THINKING>{d}</THINKING>\n{d}\n<think>\n{g}\n</think>\n{final}")
    if style == "orphan_close":
        return Reply(f"{d} wait, {g}? no.\n</think>\n\n{final}")
    if style == "fake_close_in_code":
        return Reply(f"<think>The tag is written ```\n</think>\n``` in the template. {d}\n</think>{final}")
    if style == "field_content_ws":
        return Reply(f"\n\n{final}", fields=(("reasoning_content", f"{g}\n{d}"),))
    if style == "reasoning_field":
        return Reply(final, fields=(("reasoning", f"{d} {g} {d}"),), reasoning_tokens=12)
    if style == "harmony":
        return Reply(f"<|channel|>analysis<|message|>{d}<|end|><|start|>assistant<|channel|>final"
                     f"<|message|>{final}<|return|>")
    if style == "closed_then_cut":
        return Reply(f"<think>{d}</think>{final}\n\nLet me also verify by another", finish_reason="length")
    if style == "harmony_cut":
        return Reply(f"<|channel|>analysis<|message|>{g} so", finish_reason="length")
    if style == "unclosed_caps":
        return Reply(f"<THINK>{g}\n")
    if style == "second_block_open":
        return Reply(f"<think>{d}</think>{g}\n<think>hmm, {g}", finish_reason="length")
    if style == "field_null_length":
        return Reply(None, finish_reason="length", fields=(("reasoning_content", g),))
    if style == "field_null_stop":
        return Reply(None, fields=(("reasoning", g),))
    assert style == "empty_after"
    return Reply(f"<think>{g}</think>\n \n")


def truth(bench: Bench) -> dict[str, float]:
    qs = list(bench.rows)
    kinds = [STYLES[style_of(q)] for q in qs]
    correct = sum(1 for q, k in zip(qs, kinds) if k in "AL" and right(q))
    return {"value": 100.0 * correct / len(qs), "truncated": kinds.count("T"), "length": kinds.count("L")}


def _argv(base: str, work: Path, datasets: list[str], limit: int, *extra: str) -> list[str]:
    return ["run", "--api-base", base, "--datasets", *datasets, "--limit", str(limit),
            "--data-dir", str(SHARED_DATASETS), "-w", str(work), *extra]


def _results(work: Path) -> dict[str, dict[str, Any]]:
    (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (run / "results").rglob("*.json")}


def _check(results: dict[str, dict[str, Any]], benches: dict[str, Bench]) -> None:
    for name, bench in benches.items():
        r, t = results[name], truth(bench)
        assert (r["value"], r["truncated"], r["length"], r["n"], r["n_failed"]) == (
            pytest.approx(t["value"]), t["truncated"], t["length"], len(bench.rows), 0), name


def test_gsm8k_math500_ceval_against_an_own_reasoning_server(tmp_path: Path) -> None:
    subjects = ["college_programming", "high_school_physics", "law"]
    benches = {"gsm8k": gsm8k(40), "math500": math500(40)}
    for s in subjects:
        benches[f"ceval-{s}"] = ceval([s], 40)
    lookup = {q: b for b in benches.values() for q in b.rows}

    def responder(body: dict[str, Any]) -> Reply:
        prompt = last_user_message(body)
        q = max((q for q in lookup if q in prompt), key=lambda q: (prompt.rfind(q), len(q)))
        return reply(lookup[q], body)

    styles = {style_of(q) for b in benches.values() for q in b.rows}
    assert styles == set(STYLES)
    work = tmp_path / "w"
    with OpenAIServer(responder, model_ids=["r"]) as server:
        assert main(_argv(server.base_url, work, list(benches), 40)) == 0
        first = _results(work)
        _check(first, benches)
        sent = len(server.post_requests())
        (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
        assert main(["run", "--mode", "eval", "-r", run.name, "-w", str(work),
                     "--data-dir", str(SHARED_DATASETS)]) == 0
        _check(_results(work), benches)
        assert main(["run", "-r", run.name, "-w", str(work), "--data-dir", str(SHARED_DATASETS)]) == 0
        _check(_results(work), benches)
        assert len(server.post_requests()) == sent


def _humaneval(n: int) -> list[dict[str, Any]]:
    import gzip

    with gzip.open(SHARED_DATASETS / "humaneval/data/HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _mbpp(first: int, n: int) -> list[dict[str, Any]]:
    rows = _jsonl(SHARED_DATASETS / "mbpp/mbpp/mbpp.jsonl", 600)
    return [r for r in rows if first <= r["task_id"] < first + n]


# Code styles: the right program placed where it must never be read (the thought), or as the answer.
CODE_STYLES = {
    "right_in_thought": 0, "right_in_field": 0, "right_cut_off": 0, "right_before_orphan_close": 0,
    "right_in_harmony_analysis": 0, "right_answer_after_wrong_thought": 1, "right_in_harmony_final": 1,
}
CODE_NAMES = list(CODE_STYLES)


def _code_reply(style: str, right_code: str, wrong_code: str) -> Reply:
    r, w = f"```python\n{right_code}\n```", f"```python\n{wrong_code}\n```"
    if style == "right_in_thought":
        return Reply(f"<think>Draft:\n{r}\n</think>\n{w}")
    if style == "right_in_field":
        return Reply(w, fields=(("reasoning_content", f"Draft:\n{r}"),))
    if style == "right_cut_off":
        return Reply(f"<think>Draft:\n{r}\nNow let me", finish_reason="length")
    if style == "right_before_orphan_close":
        return Reply(f"Draft:\n{r}\n</think>\n\n{w}")
    if style == "right_in_harmony_analysis":
        return Reply(f"<|channel|>analysis<|message|>{r}<|end|><|start|>assistant<|channel|>final<|message|>{w}")
    if style == "right_answer_after_wrong_thought":
        return Reply(f"<THINKING>\n{w}\n</THINKING>{r}")
    assert style == "right_in_harmony_final"
    return Reply(f"<|channel|>analysis<|message|>{w}<|end|><|start|>assistant<|channel|>final<|message|>{r}<|return|>")


def test_code_and_bbh_answers_are_never_read_from_the_thought(tmp_path: Path) -> None:
    he = _humaneval(14)
    mb = _mbpp(11, 14)
    bbh_rows = json.loads((SHARED_DATASETS / "bbh/bbh/boolean_expressions.json").read_text(encoding="utf-8"))
    bbh_rows = bbh_rows["examples"][:14]

    def responder(body: dict[str, Any]) -> Reply:
        prompt = last_user_message(body)
        for i, t in enumerate(he):
            if t["prompt"].strip() in prompt:
                style = CODE_NAMES[i % len(CODE_NAMES)]
                wrong = t["prompt"] + "    raise NotImplementedError\n"
                return _code_reply(style, t["prompt"] + t["canonical_solution"], wrong)
        hits = [(prompt.rfind(t["text"]), i) for i, t in enumerate(mb) if t["text"] in prompt]
        if hits:
            i = max(hits)[1]
            t = mb[i]
            wrong = "\n".join(line for line in t["code"].splitlines() if line.startswith(("def ", "import ", "from ")))
            wrong = wrong + "\n    return None" if wrong.startswith("def ") else t["code"] + "\nraise SystemExit(0)"
            return _code_reply(CODE_NAMES[i % len(CODE_NAMES)], t["code"], wrong)
        i = max((prompt.rfind(t["input"]), i) for i, t in enumerate(bbh_rows) if t["input"] in prompt)[1]
        gold = bbh_rows[i]["target"]
        other = "False" if gold == "True" else "True"
        style = i % 3
        if style == 0:  # the thought concludes the gold, the answer the other
            return Reply(f"<think>So the answer is {gold}.</think>So the answer is {other}.")
        if style == 1:  # cut off while concluding the gold
            return Reply(f"<think>So the answer is {gold}.", finish_reason="length")
        return Reply(f"<think>So the answer is {other}.</think>\nSo the answer is {gold}.")

    work = tmp_path / "w"
    with OpenAIServer(responder, model_ids=["r"]) as server:
        rc = main(_argv(server.base_url, work, ["humaneval", "mbpp", "bbh-boolean_expressions"], 14))
    results = _results(work)
    he_truth = 100.0 * sum(CODE_STYLES[CODE_NAMES[i % len(CODE_NAMES)]] for i in range(len(he))) / len(he)
    mb_truth = 100.0 * sum(CODE_STYLES[CODE_NAMES[i % len(CODE_NAMES)]] for i in range(len(mb))) / len(mb)
    assert results["humaneval"]["value"] == pytest.approx(he_truth), results["humaneval"]
    assert results["humaneval"]["truncated"] == 2
    assert results["mbpp"]["value"] == pytest.approx(mb_truth), results["mbpp"]
    assert results["bbh-boolean_expressions"]["value"] == pytest.approx(100.0 * 4 / 14)
    assert results["bbh-boolean_expressions"]["truncated"] == 5
    assert rc == 0


def test_gpt_oss_through_a_server_that_drops_special_tokens(tmp_path: Path) -> None:
    """TGI and raw transformers pipelines decode gpt-oss with skip_special_tokens: the channels
    arrive as `analysis...assistantfinal...`. The analysis is reasoning; cut off before the final
    channel, the reply has no answer (it was scored from the analysis)."""
    bench = gsm8k(12)

    def responder(body: dict[str, Any]) -> Reply:
        q = bench.find(last_user_message(body))
        i = list(bench.rows).index(q)
        gold, wrong = bench.rows[q], bench.wrong(bench.rows[q])
        if i % 3 == 0:  # right in the analysis, wrong in the final channel
            return Reply(f"analysisWe need {gold}. {bench.say(gold)}assistantfinal{bench.say(wrong)}")
        if i % 3 == 1:  # cut off in the analysis, which holds the gold
            return Reply(f"analysisThe user asks. {bench.say(gold)} Let me", finish_reason="length")
        return Reply(f"analysisWe need {wrong}. {bench.say(wrong)}assistantfinal{bench.say(gold)}")

    with OpenAIServer(responder, model_ids=["r"]) as server:
        assert main(_argv(server.base_url, tmp_path / "w", ["gsm8k"], 12)) == 0
    result = _results(tmp_path / "w")["gsm8k"]
    assert (result["value"], result["truncated"]) == (pytest.approx(100.0 * 4 / 12), 4)


def test_mistral_thinking_chunks_and_its_length_reasons(tmp_path: Path) -> None:
    """Magistral through Mistral's API: the thought is a `thinking` content chunk holding a list
    of text chunks, and a reply the context cut off ends with `model_length` (or a gateway's
    `max_tokens`): those are cut-off thoughts (truncated), never answers."""
    bench = gsm8k(12)

    def responder(body: dict[str, Any]) -> Reply:
        q = bench.find(last_user_message(body))
        i = list(bench.rows).index(q)
        gold, wrong = bench.rows[q], bench.wrong(bench.rows[q])
        thinking = {"type": "thinking", "thinking": [{"type": "text", "text": bench.say(gold)}]}
        if i % 3 == 0:  # right in the thought, wrong in the answer
            return Reply(None, fields=(("content", [thinking, {"type": "text", "text": bench.say(wrong)}]),))
        if i % 3 == 1:  # cut off in the thought
            return Reply(None, finish_reason="model_length" if i % 2 else "max_tokens", fields=(("content", [thinking]),))
        return Reply(None, fields=(("content", [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                                                {"type": "text", "text": bench.say(gold)}]),))

    with OpenAIServer(responder, model_ids=["r"]) as server:
        assert main(_argv(server.base_url, tmp_path / "w", ["gsm8k"], 12)) == 0
    result = _results(tmp_path / "w")["gsm8k"]
    assert (result["value"], result["truncated"]) == (pytest.approx(100.0 * 4 / 12), 4)


def test_configured_markers_a_second_thought_that_never_closes_has_no_answer() -> None:
    """As with `<think>` tags: an answer, then another thought cut off by the limit, is truncated
    (the configured markers' split read the second thought as part of the answer)."""
    from proctor.reasoning import ReasoningMarkers, split_answer

    markers = ReasoningMarkers("<|begin_of_thought|>", "<|end_of_thought|>")
    text = "<|begin_of_thought|>5?<|end_of_thought|>The answer is 5.<|begin_of_thought|>No, the answer is 7"
    split = split_answer(text, finish_reason="length", markers=markers)
    assert (split.status, split.answer) == ("truncated", None)
    tags = split_answer("<think>5?</think>The answer is 5.<think>No, the answer is 7", finish_reason="length")
    assert tags.status == split.status
    closed = split_answer("<|begin_of_thought|>5?<|end_of_thought|>The answer is 5.", markers=markers)
    assert (closed.status, closed.answer) == ("answered", "The answer is 5.")
