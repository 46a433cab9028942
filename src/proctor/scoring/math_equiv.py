r"""The `math_equiv` scorer: a worked maths answer (MATH, MATH-500) against a LaTeX gold answer.

Extraction (the first rule that finds something; each takes its last occurrence, after the
output is cut at a next question the model went on to invent):

1. boxed         the last brace-balanced `\boxed{...}` (or `\fbox{...}`, `\boxed 5`)
2. answer_is     "(the) (final) answer is X"          "The final answer is $\frac{1}{2}$."
3. answer_colon  "Answer: X" / "Final Answer: X"      "**Answer:** 12"

There is no last-number rule: a maths answer is an expression, and the last number of a
derivation is too often a step of it. No answer found: value 0, answer None, rule None.

Checking: Math-Verify (`pip install 'proctor[math]'`) parses the gold wrapped in `$...$` and
the answer, and is called with the gold FIRST. Its comparison is not symmetric (assignments,
equations vs intervals); OpenCompass' `MATHVerifyEvaluator` passes prediction and gold the
other way round, a known bug. Math-Verify accepts `\frac12` = `0.5` = `\dfrac{1}{2}`,
`(x+2)(x+5)` = `x^2+7x+10`, tuples, intervals, sets, matrices, `x = 5` for `5`, `\text{(C)}`
= `C`, and percentages: gold `10\%` matches both `10` and `0.1` (MATH asks "what percent",
so a bare 10 is the intended answer; 0.1 is the same quantity). When Math-Verify says no,
or cannot parse the answer, the string normalisation of Hendrycks' MATH checker
(`proctor.scoring.hendrycks`) is tried; it only ever adds credit for forms Math-Verify
cannot read.

`Score.rule` says what decided the verdict, `Score.extra["extraction"]` which rule found
the answer:

- "math_verify"    Math-Verify's verdict (right, or wrong and the string check agrees)
- "string"         Math-Verify said no or could not parse the answer; the strings match
- "timeout"        the check ran past `timeout` s; the string check alone decides
- "gold_unparsed"  the gold is not maths Math-Verify can read: an error of the dataset,
                   counted and explained, and scored by the string check alone (value 1
                   only if the normalised strings match). It does not raise: one bad row
                   of 500 must not throw away a run's scores, and it must not look like
                   an ordinary wrong answer either.

Isolation: every check runs in a verifier subprocess (one per scoring process, started on
first use, kept warm: sympy takes ~1 s to import). Inside it a soft deadline (SIGALRM in its
main thread, replacing Math-Verify's own `signal.alarm`, which fails outside a main thread)
stops slow pure-Python work; if the verifier still has not answered `kill_grace` s later
(stuck in C code, which no signal interrupts, or swapping) it is killed and a fresh one
started in the background. A pathological answer costs at most `timeout + kill_grace`
seconds and never stalls the items after it. The verifier's address space is capped at
`memory_mb` MiB so a 10^(10^10)-digit integer fails instead of taking the machine's memory.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from proctor.core import Record, Sample, Score
from proctor.errors import ConfigError, DataError
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.hendrycks import is_equiv
from proctor.scoring.numeric import boxed_contents
from proctor.scoring.text import strip_invisible

INSTALL_HINT = "the math_equiv scorer needs Math-Verify: pip install 'proctor[math]'"

# ---------------------------------------------------------------------------------------------
# Extraction

_NEXT_QUESTION = re.compile(r"\n[ \t]*\n\s*(?:Q|Question|Problem)\s*:")
_BOXED_BARE = re.compile(r"\\boxed[ \t]+(?=[^\s{])")
_ANSWER_IS = re.compile(r"(?i:\b(?:the\s+)?(?:final\s+)?answer\s+is)\s*:?[ \t]*")
_ANSWER_COLON = re.compile(r"(?im:^[ \t>*#_-]*(?:final\s+)?answer\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?[ \t]*)")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")


def _last_boxed(text: str) -> str | None:
    r"""The content of the last complete `\boxed{...}` (an output cut short may leave one open),
    else of a bare `\boxed 5` (up to a "$" or the line's end)."""
    boxes = boxed_contents(text)  # one pass over the braces: linear however many boxes
    if boxes:
        return boxes[0]
    bare = list(_BOXED_BARE.finditer(text))
    if not bare:
        return None
    rest = re.split(r"[$\n]", text[bare[-1].end() :], maxsplit=1)[0]
    return rest.strip().rstrip(".")


def _maths_after(text: str, start: int) -> str:
    """The answer written after "answer is" / "Answer:": a `$...$` / `\\(...\\)` span, or the sentence."""
    rest = text[start:].lstrip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(left):
            end = rest.find(right, len(left))
            if end > 0:
                return rest[len(left) : end]
    end = _SENTENCE_END.search(rest)
    return rest[: end.start()] if end else rest


def _clean_answer(answer: str) -> str:
    answer = answer.strip().replace("**", "").strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            answer = answer[len(left) : -len(right)].strip()
    return answer.rstrip(".").strip()


def extract_math_answer(text: str | None) -> tuple[str | None, str | None]:
    """(the final answer of a worked solution, the rule that found it); (None, None) when there is none."""
    if not text:
        return None, None
    cut = _NEXT_QUESTION.search(text)
    if cut:
        text = text[: cut.start()]
    boxed = _last_boxed(text)
    if boxed is not None:
        answer = _clean_answer(boxed)
        return (answer, "boxed") if answer else (None, None)
    for rule, pattern in (("answer_is", _ANSWER_IS), ("answer_colon", _ANSWER_COLON)):
        matches = list(pattern.finditer(text))
        if matches:
            answer = _clean_answer(_maths_after(text, matches[-1].end()))
            if answer:
                return answer, rule
    return None, None


# ---------------------------------------------------------------------------------------------
# The verifier subprocess


def math_verify_available() -> bool:
    try:
        return importlib.util.find_spec("math_verify") is not None
    except (ImportError, ValueError):
        return False


class _Deadline(BaseException):
    """Raised by the soft-deadline alarm; a BaseException so no `except Exception` in sympy or
    Math-Verify swallows it."""


def _serve() -> None:  # pragma: no cover - runs in the verifier subprocess (tests drive it)
    """The verifier's main loop: a JSON request per stdin line, a JSON answer per stdout line."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    if sys.platform.startswith("linux"):
        try:  # die with the scoring process, even when stuck in C code
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    memory_mb = int(os.environ.get("PROCTOR_MATH_VERIFY_MEMORY_MB", "0"))
    if memory_mb > 0:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    try:
        import logging

        logging.getLogger("math_verify").setLevel(logging.CRITICAL)
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
        from sympy import Basic
        from sympy.matrices import MatrixBase
    except ImportError as exc:
        out.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return
    config = [LatexExtractionConfig(), ExprExtractionConfig()]

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Deadline()

    signal.signal(signal.SIGALRM, on_alarm)
    gold_cache: dict[str, list[Any]] = {}

    def parsed(text: str) -> list[Any]:
        return parse(f"${text}$", config, parsing_timeout=None)  # type: ignore[arg-type]

    def is_maths(values: list[Any]) -> bool:
        return any(isinstance(v, (Basic, MatrixBase)) for v in values)

    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if "sleep" in request:  # the tests' stand-in for a check stuck in C code (no signal helps)
            signal.setitimer(signal.ITIMER_REAL, 0)
            time.sleep(float(request["sleep"]))
        reply: dict[str, Any] = {"equal": False, "gold_parsed": None, "answer_parsed": None, "timed_out": False}
        signal.setitimer(signal.ITIMER_REAL, float(request["timeout"]))
        try:
            gold = request["gold"]
            golds = gold_cache.get(gold)
            if golds is None:
                golds = parsed(gold)
                if len(gold_cache) > 4096:
                    gold_cache.clear()
                gold_cache[gold] = golds
            reply["gold_parsed"] = is_maths(golds)
            if reply["gold_parsed"]:
                answers = parsed(request["answer"])
                reply["answer_parsed"] = is_maths(answers)
                # Gold first: Math-Verify's comparison is not symmetric.
                reply["equal"] = bool(verify(golds, answers, timeout_seconds=None))
        except _Deadline:
            reply["timed_out"] = True
        except Exception as exc:
            reply["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        out.write(json.dumps(reply) + "\n")


_SERVE_CODE = "from proctor.scoring.math_equiv import _serve; _serve()"
_STARTUP_TIMEOUT_S = 120.0


class _Verifier:
    """One verifier subprocess, owned by the process (and guarded for the threads) that started it."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.buffer = b""
        self.kills = 0

    def _start(self) -> None:
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env["PROCTOR_MATH_VERIFY_MEMORY_MB"] = str(self.memory_mb)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE_CODE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the scorer, which stops it
        )
        self.ready = False
        self.buffer = b""

    def _readline(self, deadline: float) -> dict[str, Any] | None:
        """The verifier's next reply; None when it did not come before `deadline` or the verifier died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _kill(self, restart: bool) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
        self.proc = None
        if restart:
            self._start()  # warms up (imports sympy) while the caller goes on

    def _ensure_ready(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        if self.ready:
            return
        hello = self._readline(time.monotonic() + _STARTUP_TIMEOUT_S)
        if hello is None:
            self._kill(restart=False)
            raise RuntimeError("the Math-Verify verifier process did not start")
        if not hello.get("ready"):
            self._kill(restart=False)
            raise ConfigError(f"{INSTALL_HINT} ({hello.get('error')})")
        self.ready = True

    def check(self, gold: str, answer: str, timeout: float, grace: float, sleep: float | None = None) -> dict[str, Any]:
        """Math-Verify's reply for one (gold, answer); {"killed": True, ...} when it ran past timeout + grace."""
        with self.lock:
            self._ensure_ready()
            assert self.proc is not None and self.proc.stdin is not None
            request: dict[str, Any] = {"gold": gold, "answer": answer, "timeout": timeout}
            if sleep is not None:
                request["sleep"] = sleep
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):  # it died between checks: once more with a fresh one
                self._kill(restart=True)
                self._ensure_ready()
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            reply = self._readline(time.monotonic() + timeout + grace)
            if reply is None:
                self.kills += 1
                self._kill(restart=True)
                return {"equal": False, "gold_parsed": None, "answer_parsed": None, "timed_out": True, "killed": True}
            return reply

    def close(self) -> None:
        if self.owner == os.getpid() and self.proc is not None:
            try:
                self._kill(restart=False)
            except OSError:
                pass


_VERIFIERS: dict[int, _Verifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def _verifier(memory_mb: int) -> _Verifier:
    """This process's verifier: a forked worker gets its own, never its parent's pipes."""
    with _VERIFIERS_LOCK:
        verifier = _VERIFIERS.get(memory_mb)
        if verifier is None or verifier.owner != os.getpid():
            verifier = _VERIFIERS[memory_mb] = _Verifier(memory_mb)
        return verifier


def shutdown_verifiers() -> None:
    """Stop this process's verifier subprocesses (they also stop when this process ends)."""
    with _VERIFIERS_LOCK:
        for verifier in _VERIFIERS.values():
            verifier.close()
        _VERIFIERS.clear()


atexit.register(shutdown_verifiers)


# ---------------------------------------------------------------------------------------------
# The scorer


def _golds(sample: Sample) -> list[str]:
    targets = list(sample.target) if isinstance(sample.target, (list, tuple)) else [sample.target]
    golds = []
    for target in targets:
        if isinstance(target, bool) or not isinstance(target, (str, int, float)) or not str(target).strip():
            raise DataError(f"sample {sample.id}: target {target!r} is not a maths answer (math_equiv scorer)")
        golds.append(strip_invisible(str(target)).strip())
    return golds


@register
@dataclass(frozen=True)
class MathEquivScorer(BaseScorer):
    """The final answer of a worked solution against a LaTeX gold, by Math-Verify (see the module docstring).

    `timeout`: seconds one check may take (soft deadline in the verifier); `kill_grace`: how
    much longer before the verifier is killed; `memory_mb`: the verifier's address-space cap
    (0: none).
    """

    name: ClassVar[str] = "math_equiv"
    revision: ClassVar[int] = 2
    processes: ClassVar[bool] = True

    timeout: float = 5.0
    kill_grace: float = 1.0
    memory_mb: int = 4096

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"scorer 'math_equiv' param 'timeout' must be > 0, got {self.timeout!r}")
        if not self.kill_grace > 0:
            raise ConfigError(f"scorer 'math_equiv' param 'kill_grace' must be > 0, got {self.kill_grace!r}")
        if self.memory_mb < 0:
            raise ConfigError(f"scorer 'math_equiv' param 'memory_mb' must be >= 0, got {self.memory_mb!r}")

    def missing_extra(self) -> str | None:
        return None if math_verify_available() else INSTALL_HINT

    def check(self, gold: str, answer: str) -> dict[str, Any]:
        """Math-Verify's raw reply for one pair, run in this process's verifier subprocess."""
        return _verifier(self.memory_mb).check(gold, answer, self.timeout, self.kill_grace)

    def check_sample(self, sample: Sample) -> None:
        _golds(sample)

    def score(self, sample: Sample, record: Record) -> Score:
        golds = _golds(sample)  # first: a bad target is an error even when no answer is found
        # Invisible marks only: NFKC would change maths ("x²" -> "x2", "½" -> "1⁄2").
        answer, extraction = extract_math_answer(strip_invisible(record.output or ""))
        return self.judge(golds, answer, extraction)

    def judge(self, golds: list[str], answer: str | None, extraction: str | None) -> Score:
        """The verdict on an extracted answer (None: no answer found) against the golds."""
        if answer is None:
            return Score(value=0.0)
        extra = {"extraction": extraction}
        notes: list[str] = []
        rule = "math_verify"
        for gold in golds:
            reply = self.check(gold, answer)
            string_equal = is_equiv(gold, answer)
            if reply.get("timed_out"):
                how = "killed" if reply.get("killed") else "stopped"
                notes.append(f"Math-Verify ran past {self.timeout:g} s on this answer ({how}); compared as strings")
                if string_equal:
                    return Score(1.0, answer, "timeout", "; ".join(notes), extra)
                rule = "timeout"
            elif reply.get("gold_parsed") is False or reply.get("error"):
                why = reply.get("error") or "no maths in it"
                notes.append(f"dataset error: Math-Verify cannot parse the gold {gold!r} ({why}); compared as strings")
                if string_equal:
                    return Score(1.0, answer, "gold_unparsed", "; ".join(notes), extra)
                rule = "gold_unparsed"
            elif reply.get("equal"):
                return Score(1.0, answer, "math_verify", "; ".join(notes), extra)
            elif string_equal:
                notes.append("Math-Verify: not equal" if reply.get("answer_parsed") else "Math-Verify cannot parse the answer")
                return Score(1.0, answer, "string", "; ".join(notes) + "; the normalised strings match", extra)
        return Score(0.0, answer, rule, "; ".join(notes), extra)
