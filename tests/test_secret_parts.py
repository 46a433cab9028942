"""A server error body that echoes part of the API key (8+ characters: a prefix, the tail, the
middle, in another case) leaves no part of it in predictions, scores, results, the report or
the console: real HTTP server, real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reject, last_user_message
from run_helpers import only_run

from proctor.cli import main
from proctor.config.secrets import mask_secrets

KEY = "sk-proj-Q7w3E9r1T5y8U2i6O4p0AsDf"
PARTS = [KEY[-12:], KEY[8:20], KEY[:14], KEY[10:18].lower(), KEY[5:25].upper()]


def _leaks(text: str) -> list[str]:
    """Every 8-character piece of the key found in the text (case-insensitive)."""
    low = text.lower()
    return [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8].lower() in low]


def _echoing(body: dict[str, Any]) -> str:
    prompt = last_user_message(body)
    for i, part in enumerate(PARTS):
        if f"q{i}?" in prompt:
            raise Reject(400, f"Request rejected for the key ending in ...{part}: quota of project {part} exceeded")
    return "yes"


def test_no_part_of_the_key_reaches_any_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}?", "answer": "yes"}) + "\n" for i in range(len(PARTS) + 2)),
                    encoding="utf-8")
    monkeypatch.setenv("PARTS_KEY", KEY)
    with OpenAIServer(_echoing, model_ids=["m"], api_key=KEY) as server:
        code = main(["run", "--api-base", server.base_url, "--api-key-env", "PARTS_KEY", "--datasets", str(data),
                     "-w", str(tmp_path / "out")])
        rejected = [r for r in server.post_requests() if r.status == 400]
    captured = capsys.readouterr()
    assert code == 1  # failed items make the exit code 1
    assert len(rejected) >= len(PARTS)  # the server did echo every part
    run = only_run(tmp_path / "out")
    errors = [json.loads(line)["error"] for line in (run / "predictions" / "m" / "qa.jsonl").read_text().splitlines()
              if json.loads(line)["error"]]
    assert len(errors) == len(PARTS) and all("quota of project ***" in e for e in errors)
    assert _leaks(captured.out + captured.err) == []
    checked = 0
    for path in run.rglob("*"):
        if path.is_file():
            assert _leaks(path.read_text(encoding="utf-8", errors="replace")) == [], path
            checked += 1
    assert checked >= 5 and (run / "report.html").is_file()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"key {KEY} bad", "key *** bad"),
        (f"ends in {KEY[-8:]}.", "ends in ***."),
        (f"ends in {KEY[-7:]}.", f"ends in {KEY[-7:]}."),  # 7 characters: too short to mean the key
        (f"{KEY[3:11].upper()}", "***"),
        (f"a {KEY[:10]} b {KEY[12:30]} c", "a *** b *** c"),
        ("nothing secret", "nothing secret"),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text, [KEY]) == masked


def test_short_secrets_are_masked_whole() -> None:
    assert mask_secrets("user pw123 and pw1", ["pw123"]) == "user *** and pw1"
