"""The `code_exec` scorer: run the model's code against the sample's tests in the sandbox.

For HumanEval-style samples: the prompt (`question`), the test code defining `check(candidate)`
(`target`) and the function's name (`fields["entry_point"]`); the names are params. The program
run is prompt + extracted code + tests + `check(entry_point)` + a line printing a random
sentinel: a program passes only when it exits 0 *and* printed the sentinel, so one that exits
(sys.exit(0), os._exit) before the tests ran is not a pass.

Score: value 1/0, answer = the extracted code (None when none was found), rule = the status:
"passed", "failed", "syntax_error", "timeout" or "extraction_failed", explanation = the
assertion / error tail. `extra` holds the exit code and the run time.

Parallelism: `processes = True`, so the scoring stage spreads records over one worker process
per core, each running one sandboxed program at a time. `score_many` does the same from one
process with threads (the work is in the sandboxed subprocesses), one program per core.
"""

from __future__ import annotations

import ast
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.sandbox import Limits, Result, available_cores, run_program
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.code_extract import build_program, extract_code

_TAIL = 2000


@register
@dataclass(frozen=True)
class CodeExecScorer(BaseScorer):
    """Pass/fail of the extracted code against the sample's tests, run in the sandbox."""

    name: ClassVar[str] = "code_exec"
    revision: ClassVar[int] = 1
    processes: ClassVar[bool] = True

    prompt_field: str = "question"  # a Sample attribute (question, target) or a key of sample.fields
    test_field: str = "target"
    entry_point_field: str = "entry_point"
    timeout_s: float = 10.0
    memory_mb: int = 1024

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"code_exec: timeout_s must be > 0, got {self.timeout_s}")
        if self.memory_mb < 64:
            raise ValueError(f"code_exec: memory_mb must be >= 64, got {self.memory_mb}")

    def environment(self) -> dict[str, Any]:
        """How programs are isolated here (recorded in the run manifest): the guarantees differ."""
        from proctor.sandbox import isolation

        return {"sandbox": isolation().as_manifest(), "limits": {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb}}

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=float(self.timeout_s), memory_bytes=self.memory_mb << 20)

    def score(self, sample: Sample, record: Record) -> Score:
        return self._verdict(*self._prepare(sample, record))

    def score_many(self, pairs: Sequence[tuple[Sample, Record]], *, workers: int | None = None) -> list[Score]:
        """Scores in order, `workers` programs at a time (default: one per available core)."""
        workers = workers or available_cores()
        prepared = [self._prepare(sample, record) for sample, record in pairs]
        if workers <= 1:
            return [self._verdict(*p) for p in prepared]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code_exec") as pool:
            return list(pool.map(lambda p: self._verdict(*p), prepared))

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

    def _prepare(self, sample: Sample, record: Record) -> tuple[str | None, str | None, str]:
        """(extracted code, program, sentinel); code None: extraction failed; program None: syntax error."""
        prompt = self._field(sample, self.prompt_field)
        tests = self._field(sample, self.test_field)
        entry_point = self._field(sample, self.entry_point_field)
        found = extract_code(record.output, prompt, entry_point)
        if found is None:
            return None, None, ""
        sentinel = f"proctor-tests-ran-{secrets.token_hex(16)}"
        return found.code, build_program(prompt, found.code, tests, entry_point, sentinel), sentinel

    def _verdict(self, code: str | None, program: str | None, sentinel: str) -> Score:
        if code is None or program is None:
            return Score(0.0, None, "extraction_failed", "no Python code found in the output")
        try:
            ast.parse(program)
        except SyntaxError as e:
            return Score(0.0, code, "syntax_error", f"{type(e).__name__}: {e.msg} (line {e.lineno})")
        except (ValueError, RecursionError, MemoryError) as e:
            return Score(0.0, code, "syntax_error", f"{type(e).__name__}: {e}")
        result = run_program(program, self.limits)
        return _classify(code, result, sentinel, self.timeout_s)


def _classify(code: str, result: Result, sentinel: str, timeout_s: float) -> Score:
    extra = {"exit_code": result.returncode, "duration_s": round(result.duration_s, 3)}
    if result.timed_out:
        return Score(0.0, code, "timeout", f"timed out (limit {timeout_s:g}s)", extra)
    if result.output_overflow:
        return Score(0.0, code, "failed", "killed: printed more than the output limit", extra)
    ran = sentinel in result.stdout.splitlines()
    if result.returncode == 0 and ran:
        return Score(1.0, code, "passed", "", extra)
    return Score(0.0, code, "failed", _explain(result, ran), extra)


def _explain(result: Result, ran: bool) -> str:
    err = result.stderr.strip()
    if err:
        lines = err.splitlines()
        # The exception line last, e.g. "AssertionError: ...", after a short traceback tail.
        return "\n".join(lines[-12:])[-_TAIL:]
    if result.returncode is not None and result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    if not ran:
        return f"the tests did not run to the end (exit code {result.returncode}, no sentinel printed)"
    return f"exit code {result.returncode}"
