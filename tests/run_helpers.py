"""Helpers for end-to-end runs: a responder with known answers, `proctor run` argv, reading a run folder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pytest
from openai_server import last_user_message
from shared_data import SHARED_DATASETS

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
        return cls({str(s.question).strip(): s for s in samples})

    @classmethod
    def of_slices(cls, slices: dict[str, list[Sample]]) -> "KnownAnswers":
        return cls.of(s for samples in slices.values() for s in samples)

    def sample_for(self, prompt: str) -> Sample:
        # The question being asked is the last block of the prompt (few-shot blocks come first).
        best = max((q for q in self.samples if q in prompt), key=lambda q: prompt.rfind(q))
        return self.samples[best]

    def is_right(self, sample: Sample) -> bool:
        return _digest(sample.question) % 3 != 0

    def letter(self, sample: Sample) -> str:
        if self.is_right(sample):
            return sample.target
        return "ABCD"[("ABCD".index(sample.target) + 1) % 4]

    def __call__(self, body: dict[str, Any]) -> str:
        sample = self.sample_for(last_user_message(body))
        letter = self.letter(sample)
        style = STYLES[_digest(sample.id + sample.question) % len(STYLES)]
        return style.format(L=letter, FW=_FULL_WIDTH[letter])

    def expected_accuracy(self, samples: Iterable[Sample]) -> float:
        samples = list(samples)
        return 100.0 * sum(self.is_right(s) for s in samples) / len(samples)


Subject = tuple[str, str, str]  # (benchmark, subject, split)


def dataset_names(subjects: Iterable[Subject]) -> list[str]:
    """The dataset names (`ceval-computer_network`, ...) of `(benchmark, subject, split)` triples."""
    return [f"{b}-{s}" for b, s, _ in subjects]


def load_slices(subjects: Iterable[Subject], limit: int) -> dict[str, list[Sample]]:
    """`{"ceval-computer_network": first `limit` samples, ...}` from the real files."""
    from proctor.tasks import load_samples

    return {f"{b}-{s}": load_samples(b, s, split, SHARED_DATASETS)[:limit] for b, s, split in subjects}


def slice_fixtures(subjects: Sequence[Subject], limit: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Module-scoped `slices` and `answers` fixtures; use as `slices, answers = slice_fixtures(...)`."""

    @pytest.fixture(scope="module", name="slices")
    def _slices() -> dict[str, list[Sample]]:
        return load_slices(subjects, limit)

    @pytest.fixture(scope="module", name="answers")
    def _answers(slices: dict[str, list[Sample]]) -> KnownAnswers:
        return KnownAnswers.of_slices(slices)

    return _slices, _answers


def dataset_of(slices: dict[str, list[Sample]], sample: Sample) -> str:
    """The dataset a sample of `slices` belongs to."""
    return next(d for d, samples in slices.items() if sample in samples)


def model_run_args(
    model: Sequence[str], work: Path | None, datasets: Sequence[str], limit: int, *extra: str
) -> list[str]:
    """`proctor run <model flags> --datasets ... --limit N --data-dir <shared> [-w work] <extra>` as argv."""
    work_args = ["-w", str(work)] if work is not None else []
    return ["run", *model, "--datasets", *datasets, "--limit", str(limit), "--data-dir", str(SHARED_DATASETS),
            *work_args, *extra]


def run_args(base_url: str, work: Path | None, datasets: Sequence[str], limit: int, *extra: str) -> list[str]:
    """argv of `proctor run --api-base base_url ...` (see `model_run_args`)."""
    return model_run_args(["--api-base", base_url], work, datasets, limit, *extra)


def run_new(argv: list[str], work: Path) -> Path:
    """Run `proctor` with argv, which must succeed, and return the one run folder it made under `work`."""
    from proctor.cli import main

    before = set(work.iterdir()) if work.is_dir() else set()
    assert main(argv) == 0
    (run,) = set(work.iterdir()) - before
    return run


def only_run(work_dir: Path) -> Path:
    (run,) = [p for p in work_dir.iterdir() if (p / "config.json").is_file()]
    return run


def predictions_path(run: Path, model: str, dataset: str) -> Path:
    return run / "predictions" / model / f"{dataset}.jsonl"


def read_result(run: Path, model: str, dataset: str) -> dict[str, Any]:
    return json.loads((run / "results" / model / f"{dataset}.json").read_text(encoding="utf-8"))


def read_scores(run: Path, model: str, dataset: str) -> dict[str, dict[str, Any]]:
    """scores/<model>/<dataset>.jsonl by item id (written by the eval stage)."""
    from proctor.report.scorelines import read_score_lines

    return read_score_lines(run / "scores" / model / f"{dataset}.jsonl")


def read_records(run: Path, model: str, dataset: str) -> list[dict[str, Any]]:
    """The prediction lines, each with its score merged in when the eval stage has run:
    `prediction` (the extracted answer), `correct` (None when not scored) and `target`."""
    path = predictions_path(run, model, dataset)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    scores = read_scores(run, model, dataset)
    for record in records:
        score = scores.get(record["item_id"])
        if score is not None:
            record.update(prediction=score.get("answer"), correct=score.get("correct"), target=score["target"])
    return records


def read_summary(run: Path) -> str:
    return (run / "summary" / "summary.txt").read_text(encoding="utf-8")


def read_manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))
