"""End-to-end checks of what had no test: summary group rows on real data, --qps/--rpm through
the CLI, Retry-After as an HTTP date and on 503, the Ray runner's own local instance, a cached
`*_ppl` run, and `proctor data fetch` into the default place followed by a run that finds it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
import zipfile
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from openai_server import FailurePlan, OpenAIServer, default_logprob_fn, free_port
from run_helpers import (
    KnownAnswers,
    dataset_names,
    load_slices,
    read_manifest,
    read_records,
    read_result,
    run_args,
    run_new,
)
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

# --- 1. summary group rows on real data ---------------------------------------------------

# Two categories of C-Eval with subjects of different sizes (so that the mean of subjects and
# the mean of questions differ), two of them in C-Eval-Hard.
GROUP_SUBJECTS = [
    ("ceval", "discrete_mathematics", "val"),  # STEM, Hard; 16 questions
    ("ceval", "college_physics", "val"),  # STEM, Hard; 19
    ("ceval", "computer_network", "val"),  # STEM; 19
    ("ceval", "middle_school_geography", "val"),  # Social Science; 12
    ("ceval", "marxism", "val"),  # Social Science; 19
]
GROUP_LIMIT = 17  # cuts the 19-question subjects, keeps the 16 and the 12 whole


def _summary_rows(run: Path) -> list[dict[str, str]]:
    text = (run / "summary" / "summary.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@needs_shared_data
def test_group_rows_are_the_means_of_subjects_and_of_questions(tmp_path: Path) -> None:
    slices = load_slices(GROUP_SUBJECTS, GROUP_LIMIT)
    answers = KnownAnswers.of_slices(slices)
    datasets = dataset_names(GROUP_SUBJECTS)
    with OpenAIServer(answers, model_ids=["m"]) as server:
        run = run_new(run_args(server.base_url, tmp_path, datasets, GROUP_LIMIT, "--no-cache"), tmp_path)
    sizes = {d: len(s) for d, s in slices.items()}
    assert sorted(sizes.values()) == [12, 16, 17, 17, 17]

    # By hand: each subject's accuracy and number of right answers.
    right = {d: sum(answers.is_right(s) for s in samples) for d, samples in slices.items()}
    acc = {d: 100.0 * right[d] / sizes[d] for d in datasets}
    for d in datasets:
        result = read_result(run, "m", d)
        assert (result["n"], result["value"]) == (sizes[d], pytest.approx(acc[d]))

    def means(members: list[str]) -> tuple[float, float]:
        subjects = sum(acc[d] for d in members) / len(members)
        questions = 100.0 * sum(right[d] for d in members) / sum(sizes[d] for d in members)
        return subjects, questions

    stem, social = datasets[:3], datasets[3:]
    expected = {
        "ceval (5/52 subjects)": means(datasets),
        "ceval-stem (3/20 subjects)": means(stem),
        "ceval-social-science (2/10 subjects)": means(social),
        "ceval-hard (2/8 subjects)": means(datasets[:2]),
    }
    # The numbers are not all alike: each comparison below tells the two means apart.
    for subjects, questions in expected.values():
        assert abs(subjects - questions) > 0.01

    rows = _summary_rows(run)
    groups = {}
    for row in rows:
        name = row["dataset"]
        if name.startswith("ceval") and "subjects)" in name:
            groups.setdefault(name, {})[row["metric"]] = float(row["m"])
    assert set(groups) == set(expected), sorted(groups)
    for name, (subjects, questions) in expected.items():
        got = groups[name]
        assert sorted(got) == sorted(f"{metric} (mean of {kind})" for metric in ("accuracy", "extraction_rate", "truncated")
                                     for kind in ("subjects", "questions")), (name, got)
        assert got["truncated (mean of subjects)"] == 0.0  # no reasoning cut off
        # Every answer style of KnownAnswers is read: an extraction rate of 100 both ways.
        assert got["extraction_rate (mean of subjects)"] == got["extraction_rate (mean of questions)"] == 100.0
        assert got["accuracy (mean of subjects)"] == pytest.approx(subjects, abs=0.005), name
        assert got["accuracy (mean of questions)"] == pytest.approx(questions, abs=0.005), name
    # Humanities and Other have no subject in this run: no row for them.
    assert not any("humanities" in r["dataset"] or "ceval-other" in r["dataset"] for r in rows)


# --- 2. --qps / --rpm through the command line ----------------------------------------------

RATE_SUBJECTS = [("ceval", "computer_network", "val"), ("ceval", "college_physics", "val"),
                 ("ceval", "marxism", "val")]
RATE_LIMIT = 15  # 45 requests over three datasets, all sharing the model's one limiter
LATE_S = 0.25  # how much later than its slot a request may reach the server (timers, a busy box)
# The burst opens its connections all at once: on a busy 2-core box the first of them has reached
# the server 0.31 s late (CI), which shortens any window that starts inside the burst.
BURST_LATE_S = 0.6


def _bucket_excess(arrivals: list[float], rate: float, burst: float, start: int = 0) -> float:
    """How many seconds of slack the token bucket needs to explain these arrivals: the largest
    (requests in [t_i, t_j] - burst - 1) / rate - (t_j - t_i) over pairs with i >= start (<= 0: none)."""
    times = sorted(arrivals)
    return max((j - i + 1 - burst - 1) / rate - (times[j] - times[i])
               for i in range(start, len(times)) for j in range(i, len(times)))


@needs_shared_data
@pytest.mark.parametrize("limits", [["--qps", "20"], ["--qps", "100", "--rpm", "1200"]], ids=["qps", "rpm"])
def test_rate_limit_holds_end_to_end(tmp_path: Path, limits: list[str]) -> None:
    rate = burst = 20.0  # both: 20 requests/s (1200/min is stricter than 100/s), a one-second burst
    slices = load_slices(RATE_SUBJECTS, RATE_LIMIT)
    datasets = dataset_names(RATE_SUBJECTS)
    answers = KnownAnswers.of_slices(slices)
    with OpenAIServer(answers, model_ids=["m"]) as server:
        run = run_new(run_args(server.base_url, tmp_path, datasets, RATE_LIMIT, "--no-cache", *limits), tmp_path)
        arrivals = sorted(r.arrived for r in server.post_requests())
    n = RATE_LIMIT * len(datasets)
    assert len(arrivals) == n
    ideal = (n - burst) / rate  # the burst at once, then one request every 1/rate s: 1.25 s
    span = arrivals[-1] - arrivals[0]
    # Never faster than the bucket allows (without a limiter all 45 arrive within ~0.1 s) ...
    assert span >= ideal - BURST_LATE_S
    assert _bucket_excess(arrivals, rate, burst) <= BURST_LATE_S
    # ... and the last 15, sent long after start-up, one per 1/rate s (twice the rate fails this).
    assert _bucket_excess(arrivals, rate, 1.0, start=n - 15) <= LATE_S
    # ... nor throttled to another unit (20 per minute would take minutes).
    assert span <= 3 * ideal + 1.0
    for d, samples in slices.items():
        assert read_result(run, "m", d)["value"] == pytest.approx(answers.expected_accuracy(samples))


# --- 3. Retry-After as an HTTP date, and on 503 --------------------------------------------


@pytest.mark.parametrize("status, form", [("429", "date"), ("503", "date"), ("503", "seconds")])
def test_retry_after_is_waited_for_then_the_request_succeeds(tmp_path: Path, status: str, form: str) -> None:
    # The wait asked for (1-2 s) is longer than any backoff of the first retry (at most 0.5 s),
    # so a retry that comes this late was timed by the header.
    if form == "date":
        not_before = math.ceil(time.time()) + 2.0  # an HTTP date has whole seconds
        header = formatdate(not_before, usegmt=True)
    else:
        header, not_before = "1.2", math.nan
    answered_at: list[float] = []

    def responder(body: dict[str, Any]) -> str:
        answered_at.append(time.time())  # only the retry gets here: the first attempt is refused
        return "B"

    questions = tmp_path / "one.jsonl"
    questions.write_text(json.dumps({"question": "2+2=?", "A": "3", "B": "4", "C": "5", "D": "6", "answer": "B"})
                         + "\n", encoding="utf-8")
    work = tmp_path / "work"
    plan = FailurePlan(first_attempt=status, retry_after=header)  # type: ignore[arg-type]
    with OpenAIServer(responder, failures=plan, model_ids=["m"]) as server:
        run = run_new(["run", "--api-base", server.base_url, "--datasets", str(questions),
                       "-w", str(work), "--no-cache", "--retry", "2"], work)
        first, second = server.post_requests()
    assert (first.status, first.injected, second.status) == (int(status), status, 200)
    assert first.json == second.json
    waited = second.arrived - first.done
    if form == "date":
        assert answered_at[0] >= not_before - 0.05  # not before the date the server named
        assert waited <= 2.0 + 1.5  # and not much after it (the date was at most 2 s away)
    else:
        assert 1.2 - 0.02 <= waited <= 1.2 + 1.5
    (record,) = read_records(run, "m", "one")
    assert record["error"] is None and record["attempts"] == 2 and record["output"] == "B"
    assert record["correct"] is True


# --- 4. --runner ray without an address: its own local instance, started and stopped ---------

RAY_SUBJECTS = [("ceval", "computer_network", "val"), ("mmlu", "abstract_algebra", "test")]


def _ray_processes() -> set[int]:
    """Ray's own daemons (GCS, raylet) among this process's descendants."""
    import psutil

    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if any(name in child.name() for name in ("gcs_server", "raylet")):
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


@needs_shared_data
def test_ray_runner_starts_and_stops_its_own_local_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # else ray.init() would join that cluster
    assert not ray.is_initialized() and not _ray_processes()
    limit = 3
    slices = load_slices(RAY_SUBJECTS, limit)
    answers = KnownAnswers.of_slices(slices)
    datasets = dataset_names(RAY_SUBJECTS)
    with OpenAIServer(answers, model_ids=["m"]) as server:
        run = run_new(run_args(server.base_url, tmp_path, datasets, limit, "--no-cache", "--runner", "ray"), tmp_path)
        assert len(server.post_requests()) == limit * len(datasets)
    assert read_manifest(run)["runner"] == "ray"
    for d, samples in slices.items():
        assert read_result(run, "m", d)["value"] == pytest.approx(answers.expected_accuracy(samples))
    # The instance it started is gone: not joined any more, and its daemons have exited.
    assert not ray.is_initialized()
    deadline = time.monotonic() + 30
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _ray_processes()


def test_malformed_ray_address_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra")
    questions = tmp_path / "one.jsonl"
    questions.write_text(json.dumps({"question": "q", "A": "a", "B": "b", "answer": "A"}) + "\n", encoding="utf-8")
    code = main(["run", "--api-base", "http://127.0.0.1:9/v1", "--api-model", "m", "--datasets", str(questions),
                 "-w", str(tmp_path / "work"), "--runner", "ray", "--ray-address", "no-port-here"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "--runner ray" in err and "no-port-here" in err
    assert not list((tmp_path / "work").rglob("config.json"))  # no run was started



def test_unreachable_ray_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra")
    questions = tmp_path / "one.jsonl"
    questions.write_text(json.dumps({"question": "q", "A": "a", "B": "b", "answer": "A"}) + "\n", encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "proctor", "run", "--api-base", "http://127.0.0.1:9/v1", "--api-model", "m",
         "--datasets", str(questions), "-w", str(tmp_path / "work"), "--runner", "ray", "--ray-address", address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        _, err = proc.communicate(timeout=15)  # connecting to a closed port fails at once
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"--ray-address {address} (closed port): no answer after 15 s")
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and address in err, err

# --- 5. a cached *_ppl run: the second run sends nothing -------------------------------------


def _varied_logprobs(prompt: str) -> tuple[list[str], list[int], list[float | None]]:
    """The test server's word tokens, with the last token's log-prob drawn from a hash of the
    whole prompt: the options of a question score differently, and the same on every call."""
    tokens, offsets, logprobs = default_logprob_fn(prompt)
    logprobs[-1] = -0.1 - int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:4], 16) / 4096
    return tokens, offsets, logprobs


@needs_shared_data
def test_ppl_answers_come_from_the_cache_on_the_second_run(tmp_path: Path) -> None:
    dataset, limit = "ceval-computer_network_ppl", 6
    work = tmp_path / "work"
    # The server names its checkpoint: the model identity is stable across runs, so is the cache key.
    with OpenAIServer(model_ids=["m"], model_info={"m": {"root": "/ckpt/m"}}, logprob_fn=_varied_logprobs) as server:
        args = run_args(server.base_url, work, [dataset], limit, "--api-type", "completions")
        first = run_new(args, work)
        sent = server.post_requests()
        server.reset()
        second = run_new(args, work)
        resent = server.post_requests()
    assert len(sent) == limit and all(r.path == "/v1/completions" and r.json["echo"] for r in sent)
    assert resent == []  # every log-likelihood came from the cache
    before, after = read_records(first, "m", dataset), read_records(second, "m", dataset)
    assert [r["cached"] for r in before] == [False] * limit
    assert [r["cached"] for r in after] == [True] * limit

    def conclusions(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["sample_id"], json.dumps(r["prompt"]), json.dumps(r["output"]), r["prediction"],
                       r["correct"]) for r in records)

    assert conclusions(after) == conclusions(before)
    assert len({r["prediction"] for r in after}) > 1  # the options were told apart
    assert read_result(second, "m", dataset) == read_result(first, "m", dataset)


# --- 6. `proctor data fetch` into the default place, then a run that finds the data there ---


@needs_shared_data
def test_fetched_data_is_found_by_a_run_without_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_fetch import FakeHub

    # The user cache dir (platformdirs honours XDG_CACHE_HOME on Linux), a fresh hub cache, no
    # other data root: neither $PROCTOR_DATA nor a ./data beside the current directory.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "PROCTOR_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    default_root = tmp_path / "xdg" / "proctor" / "data"

    subject, limit = "computer_network", 2
    members = {
        f"{split}/{subject}_{split}.csv": (SHARED_DATASETS / "ceval" / split / f"{subject}_{split}.csv").read_bytes()
        for split in ("dev", "val", "test")
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    hub = FakeHub()
    hub.add("ceval/ceval-exam", "ceval-exam.zip", buffer.getvalue())
    thread = threading.Thread(target=hub.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        assert main(["data", "fetch", "ceval"]) == 0
    finally:
        hub.server.shutdown()
        hub.server.server_close()
    assert f"data in {default_root}" in capsys.readouterr().out
    for name, data in members.items():
        assert (default_root / "ceval" / name).read_bytes() == data

    slices = load_slices([("ceval", subject, "val")], limit)
    answers = KnownAnswers.of_slices(slices)
    dataset = f"ceval-{subject}"
    work = tmp_path / "work"
    with OpenAIServer(answers, model_ids=["m"]) as server:
        run = run_new(["run", "--api-base", server.base_url, "--datasets", dataset, "--limit", str(limit),
                       "-w", str(work), "--no-cache"], work)
        assert len(server.post_requests()) == limit
    files = read_manifest(run)["datasets"][dataset]["data_files"]
    assert sorted(files) == sorted(str(default_root / "ceval" / split / f"{subject}_{split}.csv")
                                   for split in ("dev", "val"))
    assert read_result(run, "m", dataset)["value"] == pytest.approx(answers.expected_accuracy(slices[dataset]))
