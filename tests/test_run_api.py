"""`proctor run` end to end against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_server import FailurePlan, OpenAIServer
from run_helpers import (
    KnownAnswers,
    dataset_names,
    only_run,
    read_records,
    read_result,
    read_summary,
    run_args,
    slice_fixtures,
)
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("cmmlu", "anatomy", "test"), ("mmlu", "abstract_algebra", "test")]
LIMIT = 12

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def _run(server: OpenAIServer, work: Path, *extra: str) -> int:
    return main(run_args(server.base_url, work, dataset_names(SUBJECTS), LIMIT, *extra))


def test_reports_exactly_the_accuracy_the_answers_imply(
    tmp_path: Path, slices: dict[str, list], answers: KnownAnswers
) -> None:
    with OpenAIServer(answers, model_ids=["served-model"]) as server:
        assert _run(server, tmp_path) == 0
        assert len(server.post_requests()) == LIMIT * len(SUBJECTS)
    run = only_run(tmp_path)
    for dataset, samples in slices.items():
        result = read_result(run, "served-model", dataset)
        assert result["value"] == pytest.approx(answers.expected_accuracy(samples))
        assert result["n"] == LIMIT and result["n_failed"] == 0
        # Every answer style of the server names a letter: all were extracted.
        assert result["extra_metrics"]["extraction_rate"] == pytest.approx(100.0)
        records = read_records(run, "served-model", dataset)
        assert sorted(r["sample_id"] for r in records) == sorted(s.id for s in samples)  # each once
        for record in records:
            assert record["prediction"] == answers.letter(next(s for s in samples if s.id == record["sample_id"]))
            assert record["latency_s"] >= 0 and record["completion_tokens"] is not None
            assert record["finish_reason"] == "stop"
    # Five few-shot examples as prior turns, then the question.
    first = read_records(run, "served-model", "ceval-computer_network")[0]["prompt"]
    assert [m["role"] for m in first] == ["user", "assistant"] * 5 + ["user"]
    assert first[0]["content"].startswith("以下是中国关于计算机网络考试的单项选择题")
    summary = read_summary(run)
    assert "served-model" in summary and "ceval-computer_network" in summary
    for name in ("summary.csv", "summary.md"):
        assert (run / "summary" / name).is_file()
    assert (run / "report.html").is_file() and (run / "manifest.json").is_file()


def test_injected_failures_lose_and_misscore_nothing(
    tmp_path: Path, slices: dict[str, list], answers: KnownAnswers
) -> None:
    plan = FailurePlan(rate_429=0.08, rate_500=0.08, rate_timeout=0.04, timeout_sleep=3.0, seed=7)
    with OpenAIServer(answers, failures=plan, model_ids=["flaky"]) as server:
        code = _run(server, tmp_path, "--retry", "6", "--timeout", "1")
        injected = [r for r in server.post_requests() if r.injected]
    assert injected, "the failure plan injected nothing"
    run = only_run(tmp_path)
    failed_total = 0
    for dataset, samples in slices.items():
        records = {r["sample_id"]: r for r in read_records(run, "flaky", dataset)}
        assert set(records) == {s.id for s in samples}  # no sample lost
        for sample in samples:
            record = records[sample.id]
            if record["error"]:
                failed_total += 1
                assert record["correct"] is None and record["prediction"] is None
            else:
                assert record["prediction"] == answers.letter(sample)
        result = read_result(run, "flaky", dataset)
        assert result["n"] + result["n_failed"] == LIMIT
    assert code == (1 if failed_total else 0)


def test_requests_that_keep_failing_are_recorded_failed_and_exit_nonzero(
    tmp_path: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, failures=FailurePlan(rate_500=1.0), model_ids=["down"]) as server:
        code = _run(server, tmp_path, "--retry", "1", "--datasets", "mmlu-abstract_algebra", "--limit", "3")
        port = server.port
    assert code == 1
    err = capsys.readouterr().err
    assert "samples have no answer" in err and "-r" in err
    run = only_run(tmp_path)
    result = read_result(run, "down", "mmlu-abstract_algebra")
    assert result["n"] == 0 and result["n_failed"] == 3
    assert all(r["error"] and r["attempts"] == 2 for r in read_records(run, "down", "mmlu-abstract_algebra"))
    # Resume retries only the failed samples; the server now answers.
    # The same endpoint (a resumed run refuses another model under the same name).
    with OpenAIServer(answers, model_ids=["down"], port=port) as server:
        code = main(run_args(server.base_url, tmp_path, ["mmlu-abstract_algebra"], 3, "-r", "latest"))
        assert code == 0 and len(server.post_requests()) == 3
    assert read_result(run, "down", "mmlu-abstract_algebra")["n"] == 3


def test_api_key_reaches_no_file(tmp_path: Path, answers: KnownAnswers, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-proctor-test-4f1d9c2b7e"
    monkeypatch.setenv("PROCTOR_TEST_KEY", secret)
    with OpenAIServer(answers, api_key=secret, model_ids=["keyed"]) as server:
        assert _run(server, tmp_path, "--api-key-env", "PROCTOR_TEST_KEY", "--debug") == 0
        assert all(r.headers.get("authorization") == f"Bearer {secret}" for r in server.post_requests())
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"API key leaked into {path}"


def test_completions_api_sends_plain_text(tmp_path: Path, slices: dict[str, list], answers: KnownAnswers) -> None:
    with OpenAIServer(answers, model_ids=["base"]) as server:
        assert _run(server, tmp_path, "--api-type", "completions", "--datasets", "mmlu-abstract_algebra", "--fewshot", "2") == 0
        bodies = [r.json for r in server.post_requests()]
    assert all(r.path.endswith("/completions") for r in server.post_requests())
    assert all(isinstance(b["prompt"], str) and b["prompt"].count("Answer:") == 3 for b in bodies)
    run = only_run(tmp_path)
    samples = slices["mmlu-abstract_algebra"]
    assert read_result(run, "base", "mmlu-abstract_algebra")["value"] == pytest.approx(answers.expected_accuracy(samples))


def test_ppl_over_http_echo_logprobs(tmp_path: Path) -> None:
    # The server's log-probs favour the continuation " C": every prediction must be C.
    def logprob_fn(prompt: str):
        from openai_server import default_logprob_fn

        tokens, offsets, logprobs = default_logprob_fn(prompt)
        if prompt.endswith(" C"):
            logprobs = [*logprobs[:-1], -0.01]
        return tokens, offsets, logprobs

    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["scorer"]) as server:
        code = main(run_args(server.base_url, tmp_path, ["mmlu-abstract_algebra_ppl"], 4))
        assert code == 0
    records = read_records(only_run(tmp_path), "scorer", "mmlu-abstract_algebra_ppl")
    assert [r["prediction"] for r in records] == ["C"] * 4
    assert all(len(r["loglikelihoods"]) == 4 for r in records)


def test_python_api(tmp_path: Path, slices: dict[str, list]) -> None:
    import proctor

    answers = KnownAnswers.of(slices["mmlu-abstract_algebra"])
    with OpenAIServer(answers, model_ids=["py"]) as server:
        outcome = proctor.evaluate(
            [{"api_base": server.base_url}],
            ["mmlu-abstract_algebra"],
            limit=LIMIT,
            data_dir=str(SHARED_DATASETS),
            work_dir=str(tmp_path),
        )
    (result,) = outcome.results
    assert result.model == "py" and result.n == LIMIT
    assert result.value == pytest.approx(answers.expected_accuracy(slices["mmlu-abstract_algebra"]))
    assert outcome.failed == 0 and outcome.run.root.parent == tmp_path


def test_max_seq_len_drops_fewshot_examples_to_fit(tmp_path: Path, slices: dict[str, list]) -> None:
    import math

    answers = KnownAnswers.of(slices["mmlu-abstract_algebra"])
    with OpenAIServer(answers, model_ids=["short"]) as server:
        code = _run(server, tmp_path, "--datasets", "mmlu-abstract_algebra", "--max-seq-len", "400", "--max-out-len", "8")
        # (Proctor first asks POST /tokenize, which this server does not have: the estimate it is.)
        bodies = [r.json for r in server.post_requests() if r.path.endswith("/chat/completions")]
    assert code == 0
    turns = [len(b["messages"]) for b in bodies]
    assert min(turns) < 11, "some prompts should have lost few-shot examples"
    def upper_bound(messages: list[dict]) -> int:
        # Written out here, not asked of the code under test: at most one token per 3 ASCII
        # characters and per other character, 4 per chat turn, plus the 8 to generate.
        return sum(math.ceil(len(m["content"].encode("ascii", "ignore")) / 3)
                   + len(m["content"]) - len(m["content"].encode("ascii", "ignore")) + 4 for m in messages) + 8

    full = max(bodies, key=lambda b: len(b["messages"]))["messages"]
    for body in bodies:
        messages = body["messages"]
        assert upper_bound(messages) <= 400 or len(messages) == 1  # the question itself is never cut
        if len(messages) < 11:
            # Trailing examples were dropped, not the instruction: one more would not have fit.
            shots = (len(messages) - 1) // 2
            longer = [*messages[:-1], *full[2 * shots : 2 * shots + 2], messages[-1]]
            assert messages[0]["content"].startswith("The following are multiple choice questions")
            assert upper_bound(longer) > 400
    run = only_run(tmp_path)
    assert read_result(run, "short", "mmlu-abstract_algebra")["value"] == pytest.approx(
        answers.expected_accuracy(slices["mmlu-abstract_algebra"])
    )


def test_served_model_id_with_slash_and_colon_stays_one_folder(tmp_path: Path, answers: KnownAnswers) -> None:
    with OpenAIServer(answers, model_ids=["Qwen/Qwen2.5-7B:v1"]) as server:
        assert _run(server, tmp_path, "--datasets", "mmlu-abstract_algebra", "--limit", "3") == 0
        port = server.port
    run = only_run(tmp_path)
    assert [p.name for p in (run / "predictions").iterdir()] == ["Qwen_Qwen2.5-7B_v1"]
    assert read_result(run, "Qwen_Qwen2.5-7B_v1", "mmlu-abstract_algebra")["model"] == "Qwen/Qwen2.5-7B:v1"
    assert "Qwen/Qwen2.5-7B:v1" in read_summary(run)
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.count("mmlu-abstract_algebra") >= 2 and "Qwen/Qwen2.5-7B:v1" in html
    # Resume and re-evaluation find the same folder.
    with OpenAIServer(answers, model_ids=["Qwen/Qwen2.5-7B:v1"], port=port) as server:
        assert _run(server, tmp_path, "--datasets", "mmlu-abstract_algebra", "--limit", "3", "-r", "latest", "--no-cache") == 0
        assert server.post_requests() == []
