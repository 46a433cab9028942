"""Conversations: a sample of several user turns, each answered with the model's own earlier
answers in the context, each turn its own resumable record (a real HTTP server, a real
`proctor run` subprocess killed between two turns)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from openai_server import OpenAIServer, Reply

from proctor.cli import main
from proctor.engine.store import PredictionStore

ROWS = [
    {"id": f"c{i}", "turns": [f"first question {i}", f"second question {i}"] + ([f"third question {i}"] if i % 2 else []),
     "answer": f"answer to second question {i}"}
    for i in range(6)
]
SYSTEM = "You are a careful assistant."


def _spec(tmp_path: Path, system: str | None = SYSTEM) -> Path:
    data = tmp_path / "talks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    spec = tmp_path / "talks.yaml"
    spec.write_text(
        "name: talks\nsource: {layouts: [./talks.jsonl]}\n"
        "fields: {question: '{{ turns[0] }}', choices: []}\n"
        "conversation: {turns: turns}\n"
        "prompt: {preset: free_form, fewshot: 0, texts: {en: {template: '{question}'}}"
        + (f", system: {json.dumps(system)}" if system else "") + "}\n"
        "scorer: {name: exact}\n", encoding="utf-8")
    return spec


def answer(body: dict[str, Any]) -> str:
    """The model's answer: the last user turn, and how many messages it was shown."""
    last = body["messages"][-1]["content"]
    return f"<think>thinking about {last}</think>answer to {last}"


def _argv(server: OpenAIServer, tmp_path: Path, work: Path, *extra: str) -> list[str]:
    return ["run", "--api-base", server.base_url, "--datasets", str(_spec(tmp_path)), "-w", str(work),
            "--max-concurrency", "3", *extra]


def test_each_turn_sees_the_earlier_turns_and_answers(tmp_path: Path) -> None:
    work = tmp_path / "w"
    with OpenAIServer(lambda body: answer(body), model_ids=["m"]) as server:
        assert main(_argv(server, tmp_path, work, "--no-cache")) == 0
        bodies = [r.json for r in server.post_requests()]
    assert len(bodies) == sum(len(r["turns"]) for r in ROWS)
    for row in ROWS:
        for t, text in enumerate(row["turns"]):
            (body,) = [b for b in bodies if b["messages"][-1]["content"] == text]
            want = [{"role": "system", "content": SYSTEM}]
            for earlier in row["turns"][:t]:  # the answer part only: the thought is not fed back
                want += [{"role": "user", "content": earlier}, {"role": "assistant", "content": f"answer to {earlier}"}]
            assert body["messages"] == want + [{"role": "user", "content": text}]
    (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
    records = PredictionStore(run / "predictions" / "m" / "talks.jsonl").load()
    assert sorted(records) == sorted(f"{r['id']}#t{t}" for r in ROWS for t in range(1, len(r["turns"]) + 1))
    # The record of the last turn holds the whole conversation: its prompt and its answer.
    last = records["c1#t3"]
    assert [m["content"] for m in last.prompt] == [SYSTEM, "first question 1", "answer to first question 1",
                                                   "second question 1", "answer to second question 1",
                                                   "third question 1"]
    assert last.output == "answer to third question 1" and last.sample_id == "c1"
    # The report shows it as a conversation: one block per message, the turn's answer last.
    page = (run / "report.html").read_text(encoding="utf-8")
    from proctor.report.sample_view import decode_samples

    # The report draws a conversation as its turns (the page's script renders these pairs).
    turns = [r[9] for s in decode_samples(page)["sections"] for r in s["rows"] if r[9]]
    third = next(t for t in turns if sum(role == "user" for role, _ in t) == 3)
    texts = [text for _, text in third]
    i = texts.index("answer to second question 1")
    assert third[i:i + 2] == [["assistant", "answer to second question 1"], ["user", "third question 1"]]
    assert third[i + 2][0] == "assistant"
    assert third[i + 2][1].startswith("answer to third question 1\n\n[reasoning]\nthinking about")


def test_a_model_system_prompt_replaces_the_benchmark_one(tmp_path: Path) -> None:
    from proctor.config.schema import ApiModelConfig, DatasetConfig
    from proctor.engine.prepare import prepare_dataset

    config = DatasetConfig(abbr="talks", benchmark="talks", spec_path=str(_spec(tmp_path)), mode="gen")
    dataset = prepare_dataset(config, None)
    item = dataset.items[0]
    own = dataset.request(item, chat=True, max_tokens=8, temperature=0.0)
    model = ApiModelConfig(api_base="http://x/v1", system_prompt="Be brief.")
    theirs = dataset.request(item, chat=True, max_tokens=8, temperature=0.0, system=model.system_prompt)
    assert own.messages[0].content == SYSTEM and theirs.messages[0].content == "Be brief."
    assert [m.role for m in theirs.messages] == ["system", "user"]
    # A spec without a system prompt sends none; its version differs from the one with it.
    plain = prepare_dataset(DatasetConfig(abbr="talks", benchmark="talks", spec_path=str(_spec(_sub(tmp_path), None)),
                                          mode="gen"), None)
    assert [m.role for m in plain.request(plain.items[0], chat=True, max_tokens=8, temperature=0.0).messages] == ["user"]
    assert plain.version != dataset.version


def test_a_turn_after_a_cut_off_thought_is_failed_not_asked(tmp_path: Path) -> None:
    work = tmp_path / "w"

    def responder(body: dict[str, Any]) -> Reply | str:
        last = body["messages"][-1]["content"]
        if last == "first question 2":
            return Reply("<think>still thinking", finish_reason="length")
        return answer(body)

    with OpenAIServer(responder, model_ids=["m"]) as server:
        assert main(_argv(server, tmp_path, work, "--no-cache")) == 1  # a failed record: exit code 1
        asked = [r.json["messages"][-1]["content"] for r in server.post_requests()]
    assert "second question 2" not in asked
    (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
    records = PredictionStore(run / "predictions" / "m" / "talks.jsonl").load()
    assert records["c2#t2"].error == "turn 1 has no answer (truncated) to go on from"


def test_sigkill_between_turns_resumes_at_the_second_turn(tmp_path: Path) -> None:
    work = tmp_path / "killed"
    release = threading.Event()

    def responder(body: dict[str, Any]) -> str:
        if len(body["messages"]) > 2:  # a later turn: held until the run is killed
            release.wait(20)
        return answer(body)

    with OpenAIServer(responder, model_ids=["m"]) as server:
        argv = _argv(server, tmp_path, work, "--no-cache")
        proc = subprocess.Popen([sys.executable, "-m", "proctor", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        path = None
        while True:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote no first turns"
            found = list(work.glob("*/predictions/m/talks.jsonl"))
            if found and len(found[0].read_bytes().splitlines()) == len(ROWS):
                path = found[0]
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        release.set()
        before = _drained(server)
        done = PredictionStore(path).load()
        assert sorted(done) == sorted(f"{r['id']}#t1" for r in ROWS)  # every first turn, no later one
        assert main(_argv(server, tmp_path, work, "--no-cache", "-r", "latest")) == 0
        resent = [r.json["messages"] for r in server.post_requests()[before:]]
    # Only later turns were sent: none of the first turns was asked again.
    assert all(len(m) > 2 for m in resent)
    assert sorted(m[-1]["content"] for m in resent) == sorted(t for r in ROWS for t in r["turns"][1:])
    records = PredictionStore(path).load()
    assert len(records) == sum(len(r["turns"]) for r in ROWS) and not any(r.failed for r in records.values())


def _sub(tmp_path: Path) -> Path:
    (tmp_path / "plain").mkdir(exist_ok=True)
    return tmp_path / "plain"


def _drained(server: OpenAIServer) -> int:
    """The POST count once what the killed run had sent is answered (held requests queue behind
    the one the responder holds) and nothing new arrived for half a second."""
    count, quiet = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() - quiet < 0.5:
        assert time.monotonic() < deadline
        now = len(server.post_requests())
        if now != count or any(r.done is None for r in server.requests):
            count, quiet = now, time.monotonic()
        time.sleep(0.02)
    return count


def test_shards_split_between_conversations_never_inside_one(tmp_path: Path) -> None:
    outputs = []
    for name, extra in (("one", ()), ("shards", ("--max-partition-size", "2"))):
        with OpenAIServer(lambda body: answer(body), model_ids=["m"]) as server:
            assert main(_argv(server, tmp_path, tmp_path / name, "--no-cache", *extra)) == 0
        (run,) = [p for p in (tmp_path / name).iterdir() if (p / "config.json").is_file()]
        records = PredictionStore(run / "predictions" / "m" / "talks.jsonl").load()
        outputs.append({k: (r.prompt, r.output) for k, r in records.items()})
        if name == "shards":  # 6 conversations in shards of 2: three tasks, every turn answered
            log = (run / "logs" / "m" / "talks.log").read_text(encoding="utf-8")
            assert log.count("sent") == 3
    assert outputs[0] == outputs[1] and len(outputs[0]) == sum(len(r["turns"]) for r in ROWS)


def test_two_models_with_other_system_prompts_get_their_own_requests(tmp_path: Path) -> None:
    """The rendered requests are shared by models that would render them alike: a model's own
    system_prompt makes them differ, so a second model never gets the first one's prompt."""
    from proctor.config.schema import ApiModelConfig, DatasetConfig
    from proctor.engine.infer import _Requests
    from proctor.engine.prepare import prepare_dataset

    config = DatasetConfig(abbr="talks", benchmark="talks", spec_path=str(_spec(tmp_path)), mode="gen")
    dataset = prepare_dataset(config, None)
    rendered = _Requests()
    brief = ApiModelConfig(api_base="http://x/v1", abbr="brief", system_prompt="Be brief.")
    plain = ApiModelConfig(api_base="http://x/v1", abbr="plain")
    (_, first), *_ = rendered.of(dataset, True, brief)
    (_, second), *_ = rendered.of(dataset, True, plain)
    assert first.messages[0].content == "Be brief." and second.messages[0].content == SYSTEM
