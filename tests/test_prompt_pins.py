"""The prompts Proctor 0.1 sent, pinned: moving benchmarks onto spec files changed no byte.

tests/data/prompt_pins.json was written by Proctor 0.1 (before task specs) from real rows of
shared/datasets: per dataset, few-shot count, chat/text and max_seq_len, the sha256 of every
request's payload, the prompt version and the sample ids. Same payloads mean the same
`version` column and the same response-cache keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.engine.prepare import prepare_dataset
from proctor.tasks import resolve_datasets

PINS = json.loads((Path(__file__).parent / "data" / "prompt_pins.json").read_text(encoding="utf-8"))


def _case(key: str) -> tuple[str, int, bool, int | None]:
    abbr, fewshot, chat, max_seq_len = key.split("|")
    msl = max_seq_len.split("=")[1]
    return abbr, int(fewshot.split("=")[1]), chat.endswith("True"), None if msl == "None" else int(msl)


def _name(abbr: str) -> tuple[str, str | None]:
    if abbr.endswith("_ppl_options"):
        return abbr.removesuffix("_options"), "options"
    return abbr, None


@needs_shared_data
@pytest.mark.parametrize("key", sorted(PINS))
def test_requests_are_byte_identical_to_0_1(key: str) -> None:
    abbr, fewshot, chat, max_seq_len = _case(key)
    name, continuations = _name(abbr)
    overrides = {"fewshot": fewshot, "limit": 4, **({"continuations": continuations} if continuations else {})}
    (config,) = resolve_datasets([name], **overrides)
    assert config.abbr == abbr
    prepared = prepare_dataset(config, str(SHARED_DATASETS))
    requests = [
        prepared.request(item, chat=chat, max_tokens=256, temperature=0.0, max_seq_len=max_seq_len)
        for item in prepared.items
    ]
    pin = PINS[key]
    assert [item.id for item in prepared.items] == pin["ids"]
    assert prepared.version == pin["version"]
    if "first" in pin:  # readable on failure: the first request in full
        assert requests[0].payload() == pin["first"]
    blob = json.dumps([r.payload() for r in requests], ensure_ascii=False, sort_keys=True)
    assert hashlib.sha256(blob.encode()).hexdigest() == pin["sha256"]
