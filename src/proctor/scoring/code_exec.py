"""The `code_exec` scorer: run the model's code against the sample's tests in the sandbox.

For HumanEval-style samples: the prompt (`question`), the test code defining `check(candidate)`
(`target`) and the function's name (`fields["entry_point"]`); the names are params.

The verdict cannot be forged by the code under test (proctor.sandbox.split): the prompt and the
extracted code run in one sandbox (the candidate), the prompt's helpers and the tests in another
(the tester), where `candidate` and the entry point's name are proxies that send the arguments
across a pipe and get back plain data only (None, bool, int, float, complex, str, bytes and
lists, tuples, dicts, sets of those). The item passes only when the tester, after `check`
returned, prints its verdict line; whatever the candidate prints, exits with or returns (an
object equal to anything is not plain data) cannot reach it.

Score: value 1/0, answer = the extracted code (None when none was found), rule = the status:
"passed", "failed", "syntax_error", "timeout" or "extraction_failed", explanation = the
assertion / error tail. `extra` holds the exit codes, the run time and the number of calls.

Time: extraction is linear in the output's length and stops at `extract_s`; the two programs
share one wall-clock limit (`timeout_s`), so an item never takes much more than their sum.

Parallelism: `processes = True`, so the scoring stage spreads records over one worker process
per core, each running one sandboxed pair at a time. `score_many` does the same from one
process with threads (the work is in the sandboxed subprocesses), one pair per core.
"""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.sandbox import Limits, available_cores
from proctor.sandbox.split import Outcome, judge
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.code_extract import (
    Extracted, ExtractionTimeout, build_candidate, extract_code, tester_prelude,
)


@dataclass(frozen=True)
class SandboxedScorer(BaseScorer):
    """What the sandboxed code scorers share: limits, validation, the manifest entry and the
    run of prepared items; a subclass says how one item is prepared (`_prepare`)."""

    reads: ClassVar[str] = "code run against the tests"
    processes: ClassVar[bool] = True

    timeout_s: float = 10.0
    memory_mb: int = 1024
    extract_s: float = 2.0  # at most this long to find the code in one output

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"{self.name}: timeout_s must be > 0, got {self.timeout_s}")
        if self.memory_mb < 64:
            raise ValueError(f"{self.name}: memory_mb must be >= 64, got {self.memory_mb}")
        if not self.extract_s > 0:
            raise ValueError(f"{self.name}: extract_s must be > 0, got {self.extract_s}")

    def environment(self) -> dict[str, Any]:
        """How programs are isolated here (recorded in the run manifest): the guarantees differ."""
        return sandbox_environment(self.limits)

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=float(self.timeout_s), memory_bytes=self.memory_mb << 20)

    def score(self, sample: Sample, record: Record) -> Score:
        return run_prepared(self._prepare(sample, record), self.limits)

    def score_many(self, pairs: Sequence[tuple[Sample, Record]], *, workers: int | None = None) -> list[Score]:
        """Scores in order, `workers` pairs at a time (default: one per available core)."""
        workers = workers or available_cores()
        prepared = [self._prepare(sample, record) for sample, record in pairs]
        if workers <= 1:
            return [run_prepared(p, self.limits) for p in prepared]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=self.name) as pool:
            return list(pool.map(lambda p: run_prepared(p, self.limits), prepared))

    def _prepare(self, sample: Sample, record: Record) -> "Prepared":
        raise NotImplementedError

    def _extract(self, output: str | None, prompt: str | None, entry_point: str) -> "Extracted | Prepared":
        """The code in `output`, or the Prepared of an item whose extraction failed."""
        try:
            found = extract_code(output, prompt, entry_point, deadline_s=self.extract_s)
        except ExtractionTimeout as e:
            return Prepared(None, None, "", (), "", f"{e} (limit {self.extract_s:g}s)")
        if found is None:
            return Prepared(None, None, "", (), "", "no Python code found in the output")
        return found


@register
@dataclass(frozen=True)
class CodeExecScorer(SandboxedScorer):
    """Pass/fail of the extracted code against the sample's tests, run in the sandbox."""

    name: ClassVar[str] = "code_exec"
    revision: ClassVar[int] = 2

    prompt_field: str = "question"  # a Sample attribute (question, target) or a key of sample.fields
    test_field: str = "target"
    entry_point_field: str = "entry_point"

    def _field(self, sample: Sample, name: str) -> str:
        if name in ("question", "target", "id"):
            value: Any = getattr(sample, name)
        elif name in sample.fields:
            value = sample.fields[name]
        else:
            raise DataError(f"sample {sample.id}: the code_exec scorer needs the field {name!r}")
        if not isinstance(value, str):
            raise DataError(f"sample {sample.id}: field {name!r} must be a string, got {type(value).__name__}")
        return value

    def _prepare(self, sample: Sample, record: Record) -> "Prepared":
        prompt = self._field(sample, self.prompt_field)
        tests = self._field(sample, self.test_field)
        entry_point = self._field(sample, self.entry_point_field)
        found = self._extract(record.output, prompt, entry_point)
        if isinstance(found, Prepared):
            return found
        tests = tests.strip("\n") + f"\n\n\ncheck({entry_point})\n"
        return Prepared(found.code, build_candidate(prompt, found.code, entry_point), tests,
                        ((entry_point, False),), tester_prelude(prompt, entry_point), "")


def sandbox_environment(limits: Limits) -> dict[str, Any]:
    """What the sandbox enforces here, for the run manifest: isolation, limits, the verdict's isolation."""
    from proctor.sandbox import isolation

    iso = isolation()
    return {
        "sandbox": iso.as_manifest(),
        "limits": {"timeout_s": limits.timeout_s, "memory_mb": limits.memory_bytes >> 20,
                   **limits.plan(iso.nproc_enforced, bool(iso.memory_cgroup)).as_manifest(limits)},
        "verdict": {"split": True, "isolated_from_candidate": iso.pid_namespace},
    }


@dataclass(frozen=True)
class Prepared:
    """One item ready to run: code None means extraction failed (`why` says how)."""

    code: str | None
    candidate: str | None  # the candidate program's source (prompt + code)
    tests: str  # the tester's code, which calls the proxies
    bindings: tuple[tuple[str, bool], ...]
    prelude: str  # trusted code the tester runs first (the prompt's helpers)
    why: str


def run_prepared(p: Prepared, limits: Limits) -> Score:
    """The Score of a prepared item: extraction/syntax failures, else the split run's verdict."""
    if p.code is None or p.candidate is None:
        return Score(0.0, None, "extraction_failed", p.why or "no Python code found in the output")
    try:
        ast.parse(p.candidate)
    except SyntaxError as e:
        return Score(0.0, p.code, "syntax_error", f"{type(e).__name__}: {e.msg} (line {e.lineno})")
    except (ValueError, RecursionError, MemoryError) as e:
        return Score(0.0, p.code, "syntax_error", f"{type(e).__name__}: {e}")
    outcome = judge(p.candidate, p.tests, p.bindings, prelude=p.prelude, limits=limits)
    return _score(p.code, outcome)


def _score(code: str, outcome: Outcome) -> Score:
    extra = {
        "exit_code": outcome.candidate.returncode,
        "tester_exit_code": outcome.tester.returncode,
        "calls": outcome.calls,
        "duration_s": round(max(outcome.candidate.duration_s, outcome.tester.duration_s), 3),
    }
    value = 1.0 if outcome.passed else 0.0
    return Score(value, code, outcome.status, outcome.explanation, extra)
