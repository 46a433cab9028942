"""The predictions store and the response cache survive crashes and corruption."""

from __future__ import annotations

import json
from pathlib import Path

from proctor.core import Record, Request, Response
from proctor.engine.cache import ResponseCache
from proctor.engine.store import PredictionStore


def _record(sample_id: str, error: str | None = None) -> Record:
    return Record(item_id=sample_id, prompt="p", output=None if error else "A", loglikelihoods=None, error=error)


def test_store_appends_and_last_record_wins(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "m" / "d.jsonl")
    store.append(_record("1", error="HTTP 500"))
    store.append(_record("2"))
    store.append(_record("1"))
    # Flushed per record: readable before close.
    assert len((tmp_path / "m" / "d.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    store.close()
    loaded = PredictionStore(tmp_path / "m" / "d.jsonl").load()
    assert set(loaded) == {"1", "2"} and not loaded["1"].failed


def test_half_written_line_is_dropped_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    store = PredictionStore(path)
    store.append(_record("1"))
    store.close()
    good = path.read_bytes()
    line = json.dumps(_record("2").to_json())
    path.write_bytes(good + line[: len(line) // 2].encode())
    loaded = PredictionStore(path).load()
    assert set(loaded) == {"1"}
    assert path.read_bytes() == good
    # Appending after the cut gives a valid file again.
    store = PredictionStore(path)
    store.append(_record("2"))
    store.close()
    assert set(PredictionStore(path).load()) == {"1", "2"}


def test_cache_round_trip_and_only_successes(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    request = Request(kind="generate", prompt="hi", max_tokens=4)
    key = request.key("api|x|m|chat")
    assert key != Request(kind="generate", prompt="hi", max_tokens=5).key("api|x|m|chat")
    assert key != request.key("api|x|other|chat")
    cache.put(key, Response(text="A", completion_tokens=1, latency_s=0.2))
    cache.put("bad", Response(error="HTTP 500"))
    found = cache.get_many([key, "bad", "missing"])
    assert set(found) == {key} and found[key].text == "A"
    assert cache.stats().entries == 1
    assert cache.clear() == 1 and cache.stats().entries == 0
    cache.close()


def test_corrupted_cache_is_reported_moved_and_rebuilt(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    cache = ResponseCache(path)
    assert "corrupted" in caplog.text
    assert list(tmp_path.glob("c.corrupt-*"))
    cache.put("k", Response(text="B"))
    assert cache.get_many(["k"])["k"].text == "B"
    cache.close()


def test_config_json_masks_secrets_in_urls(tmp_path: Path) -> None:
    from proctor.config.schema import ApiModelConfig, DatasetConfig, RunConfig
    from proctor.engine.rundir import RunDir, write_config

    secret = "hunter2-secret"
    model = ApiModelConfig(api_base=f"https://me:{secret}@api.example.com/v1?api-version=1&api_key={secret}", api_key=secret)
    config = RunConfig(models=[model], datasets=[DatasetConfig(abbr="d", benchmark="mmlu", subject="anatomy")])
    run = RunDir(tmp_path)
    write_config(run, config, ["proctor", "run", "--api-key", secret])
    text = (tmp_path / "config.json").read_text(encoding="utf-8")
    assert secret not in text
    assert "api.example.com/v1" in text and "api-version=1" in text


def test_cache_writes_answers_in_batches_and_loses_none(tmp_path: Path) -> None:
    """Hundreds of answers a second: one transaction per batch, not per answer (a commit per
    answer cost more CPU than its HTTP request); what was put is read back, by the same
    cache at once and by another connection after close."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    statements: list[str] = []
    cache._conn.set_trace_callback(statements.append)
    answers = {Request(kind="generate", prompt=f"q{i}").key("m"): Response(text=f"a{i}") for i in range(300)}
    for key, response in answers.items():
        cache.put(key, response)
    commits = sum(1 for s in statements if s.strip().upper() == "COMMIT")
    assert commits <= 2, statements[:5]
    found = cache.get_many(answers)  # the same cache sees what it was given at once
    assert {k: v.text for k, v in found.items()} == {k: v.text for k, v in answers.items()}
    cache.close()
    again = ResponseCache(tmp_path / "c.sqlite")
    assert len(again.get_many(answers)) == 300
    again.close()
