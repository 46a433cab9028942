"""Loading a dataset config's samples and few-shot examples, and rendering its requests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proctor.config.ranges import apply_range
from proctor.config.schema import DatasetConfig
from proctor.core import Request, Sample
from proctor.prompts import build_request, prompt_version


@dataclass(frozen=True)
class PreparedDataset:
    config: DatasetConfig
    samples: tuple[Sample, ...]  # the selected eval samples, in file order
    shots: tuple[Sample, ...]
    language: str
    subject_title: str
    version: str
    files: tuple[Path, ...]

    def request(
        self, sample: Sample, *, chat: bool, max_tokens: int, temperature: float, max_seq_len: int | None = None
    ) -> Request:
        """The sample's request; with `max_seq_len`, the last few-shot examples are dropped
        until the prompt and its answer fit (as OpenCompass does), rather than cutting the prompt."""
        from proctor.prompts.length import estimate_request_tokens

        shots = self.shots
        while True:
            request = build_request(
                sample,
                shots,
                language=self.language,  # type: ignore[arg-type]
                subject=self.subject_title,
                mode=self.config.mode,
                chat=chat,
                continuations=self.config.continuations,
                max_tokens=self.config.max_out_len or max_tokens,
                temperature=temperature,
            )
            if not shots or max_seq_len is None or estimate_request_tokens(request) <= max_seq_len:
                return request
            shots = shots[:-1]


def prepare_dataset(config: DatasetConfig, data_dir: str | None) -> PreparedDataset:
    from proctor.datasets import data_files, get_benchmark, load_samples

    bench = get_benchmark(config.benchmark)
    subject = bench.subject(config.subject)
    root = config.data_dir or data_dir
    samples = load_samples(bench.name, subject.name, bench.eval_split, root)
    selected = apply_range(samples, config.range, config.limit, where=f"dataset {config.abbr}")
    shots: list[Sample] = []
    files = list(data_files(bench.name, subject.name, bench.eval_split, root))
    if config.fewshot:
        shots = load_samples(bench.name, subject.name, bench.fewshot_split, root)[: config.fewshot]
        files += data_files(bench.name, subject.name, bench.fewshot_split, root)
    # Chinese benchmarks name the subject in Chinese, as their official prompts do.
    title = (subject.title_zh or subject.title) if bench.language == "zh" else subject.title
    return PreparedDataset(
        config=config,
        samples=tuple(selected),
        shots=tuple(shots),
        language=bench.language,
        subject_title=title,
        version=prompt_version(bench.language, config.mode, config.continuations),  # type: ignore[arg-type]
        files=tuple(files),
    )
