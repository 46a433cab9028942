"""Helpers for end-to-end runs: a responder with known answers, and reading a run folder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from openai_server import last_user_message

from proctor.core import Sample

# Answer styles real chat models use; {L} is the letter given.
STYLES = [
    "{L}",
    "答案：{L}",
    "答案是{L}。",
    "The answer is ({L}).",
    "{L}. 这个选项正确",
    "正确答案是 {L}，因为题干所述。",
    "**{L}**",
    "选{L}",
    "Answer: {L}",
    "我认为答案应该是{L}",
    "{FW}",
]
_FULL_WIDTH = {"A": "Ａ", "B": "Ｂ", "C": "Ｃ", "D": "Ｄ"}


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


@dataclass
class KnownAnswers:
    """Answers each question right or wrong by a hash of its text, in a rotating style."""

    samples: dict[str, Sample]  # question block start -> sample

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> "KnownAnswers":
        return cls({str(s.fields["question"]).strip(): s for s in samples})

    @classmethod
    def of_slices(cls, slices: dict[str, list[Sample]]) -> "KnownAnswers":
        return cls.of(s for samples in slices.values() for s in samples)

    def sample_for(self, prompt: str) -> Sample:
        # The question being asked is the last block of the prompt (few-shot blocks come first).
        best = max((q for q in self.samples if q in prompt), key=lambda q: prompt.rfind(q))
        return self.samples[best]

    def is_right(self, sample: Sample) -> bool:
        return _digest(sample.fields["question"]) % 3 != 0

    def letter(self, sample: Sample) -> str:
        if self.is_right(sample):
            return sample.target
        return "ABCD"[("ABCD".index(sample.target) + 1) % 4]

    def __call__(self, body: dict[str, Any]) -> str:
        sample = self.sample_for(last_user_message(body))
        letter = self.letter(sample)
        style = STYLES[_digest(sample.id + sample.fields["question"]) % len(STYLES)]
        return style.format(L=letter, FW=_FULL_WIDTH[letter])

    def expected_accuracy(self, samples: Iterable[Sample]) -> float:
        samples = list(samples)
        return 100.0 * sum(self.is_right(s) for s in samples) / len(samples)


def load_slices(subjects: Iterable[tuple[str, str, str]], limit: int) -> dict[str, list[Sample]]:
    """`{"ceval-computer_network": first `limit` samples, ...}` from the real files."""
    from shared_data import SHARED_DATASETS

    from proctor.datasets import load_samples

    return {f"{b}-{s}": load_samples(b, s, split, SHARED_DATASETS)[:limit] for b, s, split in subjects}


def only_run(work_dir: Path) -> Path:
    (run,) = [p for p in work_dir.iterdir() if (p / "config.json").is_file()]
    return run


def read_result(run: Path, model: str, dataset: str) -> dict[str, Any]:
    return json.loads((run / "results" / model / f"{dataset}.json").read_text(encoding="utf-8"))


def read_records(run: Path, model: str, dataset: str) -> list[dict[str, Any]]:
    path = run / "predictions" / model / f"{dataset}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
