"""Tests whose verdict the code under test cannot forge: the candidate and the tester in two sandboxes.

    from proctor.sandbox.split import judge
    outcome = judge(candidate_source, tests, bindings=[("add", False)], prelude=prompt)

The candidate program (the prompt, then the model's code) runs in one sandbox and only answers
requests (candidate.py). The tester program (the benchmark's own code: the prompt's helpers,
the tests) runs in another, with each name in `bindings` bound to a proxy that sends its
arguments across a pipe and gets back plain data only (wire.py). The verdict is a line the tester
prints after the tests returned, marked with a nonce the candidate never sees; the candidate has
no way to reach the tester's process, output or memory (in the namespaced modes each sandbox has
its own pid namespace, uid, mounts and network), so printing, exit codes, atexit hooks,
re-exec, threads, objects that equal anything and patched builtins all stay on its own side.

A binding `(name, True)` may return handles (objects that stay in the candidate: MBPP's setup
code builds a tree of the candidate's `Node`s); a plain-only binding `(name, False)` fails the
run when it returns anything but plain data.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from proctor.sandbox.isolation import Isolation
from proctor.sandbox.limits import Limits
from proctor.sandbox.runner import Result, run_split

_HERE = Path(__file__).parent
_TAIL = 2000


@lru_cache(maxsize=1)
def _parts() -> tuple[str, str, str]:
    read = lambda name: (_HERE / name).read_text(encoding="utf-8")  # noqa: E731
    return read("wire.py"), read("candidate.py"), read("tester.py")


def candidate_program(source: str, filename: str = "prog.py") -> str:
    """The candidate's program: `source` run in a namespace of its own, then serving requests on fds 3/4."""
    wire, candidate, _ = _parts()
    return f"{wire}\n{candidate}\n_candidate_main(3, 4, {source!r}, {filename!r})\n"


def tester_program(tests: str, bindings: Sequence[tuple[str, bool]], nonce: str, prelude: str = "") -> str:
    """The tester's program: `prelude`, then the proxies, then `tests`; prints `<nonce> {verdict}`."""
    wire, _, tester = _parts()
    cfg = {"req": 4, "rep": 3, "nonce": nonce}
    return f"{wire}\n{tester}\n_tester_main({cfg!r}, {prelude!r}, {tests!r}, {list(map(tuple, bindings))!r})\n"


@dataclass(frozen=True)
class Outcome:
    status: str  # "passed", "failed" or "timeout"
    explanation: str
    candidate: Result
    tester: Result
    calls: int = 0  # requests the tester sent

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _verdict(stdout: str, nonce: str) -> dict[str, object] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                data = json.loads(line[len(nonce) + 1 :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def judge(candidate_source: str, tests: str, bindings: Sequence[tuple[str, bool]], *, prelude: str = "",
          limits: Limits = Limits(), iso: Isolation | None = None) -> Outcome:
    """Run the tests against the candidate, each in its sandbox; the verdict comes from the tester only."""
    nonce = f"proctor-verdict-{secrets.token_hex(16)}"
    cand, test = run_split(candidate_program(candidate_source), tester_program(tests, bindings, nonce, prelude),
                           limits, iso)
    verdict = _verdict(test.stdout, nonce) if not (test.timed_out or test.output_overflow) else None
    if test.timed_out:
        return Outcome("timeout", f"timed out (limit {limits.timeout_s:g}s)", cand, test)
    if verdict is None:
        why = "printed more than the output limit" if test.output_overflow else f"exit code {test.returncode}"
        tail = test.stderr.strip()[-_TAIL:]
        return Outcome("failed", f"the tests did not run to the end ({why})" + (f"\n{tail}" if tail else ""), cand, test)
    calls = int(verdict.get("calls") or 0)
    if verdict.get("passed") is True and test.returncode == 0:
        return Outcome("passed", "", cand, test, calls)
    error = str(verdict.get("error") or f"exit code {test.returncode}")
    if error.startswith("CandidateBroke:"):
        if cand.timed_out:
            return Outcome("timeout", f"timed out (limit {limits.timeout_s:g}s)", cand, test, calls)
        tail = _candidate_tail(cand)
        error += f"\n{tail}" if tail else ""
    return Outcome("failed", error[-_TAIL:], cand, test, calls)


def _candidate_tail(cand: Result) -> str:
    if cand.output_overflow:
        return "(the candidate printed more than the output limit and was killed)"
    if cand.returncode is not None and cand.returncode < 0:
        return f"(the candidate was killed by signal {-cand.returncode})"
    err = cand.stderr.strip()
    return "\n".join(err.splitlines()[-8:])[-1000:] if err else ""
