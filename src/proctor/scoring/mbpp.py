"""The `mbpp` scorer: MBPP's `assert` tests against the model's code, in the split sandbox.

The code is what the model wrote between `[BEGIN]` and `[DONE]` (either may be missing; a fenced
block or prose around the code is handled as for HumanEval). It runs alone in the candidate
sandbox; the tester runs `test_setup_code` and the `test_list` asserts, with each name the tests
take from the code bound to a proxy (proctor.sandbox.split): the names the tests use without
defining them, plus the reference solution's own functions that the tests call (task 126 names
its function `sum`). A builtin the candidate redefines is never bound unless the reference
defines it too, so `def abs(x): return 0` cannot pass `assert abs(f(x) - y) < 1e-9`. Names used
by the setup code alone (task 367 builds a tree of the candidate's `Node`s) may return handles,
objects that stay in the candidate; the asserts' names return plain data only.

Score: as code_exec (value 1/0, answer = the extracted code, rule passed / failed / syntax_error
/ timeout / extraction_failed).
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Any, ClassVar

from proctor.core import Record, Sample
from proctor.errors import DataError
from proctor.scoring.base import register
from proctor.scoring.code_exec import Prepared, SandboxedScorer

_BUILTINS = frozenset(dir(builtins))


def between_markers(output: str) -> str:
    """The text after the first `[BEGIN]` (if any) and before the next `[DONE]` (if any)."""
    text = output
    begin = text.find("[BEGIN]")
    if begin != -1:
        text = text[begin + len("[BEGIN]"):]
    done = text.find("[DONE]")
    return text[:done] if done != -1 else text


def _names(tree: ast.AST) -> tuple[set[str], set[str], list[str]]:
    """(names loaded, names bound, names called in order) of a module."""
    loaded: set[str] = set()
    bound: set[str] = set()
    called: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in called:
            called.append(node.func.id)
    return loaded, bound, called


def _top_level_defs(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def bindings(setup: str, asserts: str, reference: str, where: str) -> tuple[tuple[tuple[str, bool], ...], str]:
    """The proxies the tester needs ((name, handles allowed), ...) and the entry point's name."""
    try:
        setup_tree, test_tree = ast.parse(setup), ast.parse(asserts)
    except SyntaxError as e:
        raise DataError(f"{where}: the tests do not parse ({e.msg}, line {e.lineno})") from None
    s_loaded, s_bound, s_called = _names(setup_tree)
    t_loaded, t_bound, t_called = _names(test_tree)
    bound = s_bound | t_bound
    free = (s_loaded | t_loaded) - bound - _BUILTINS
    own = _top_level_defs(reference) & set(s_called + t_called)  # e.g. a function called `sum`
    names = sorted(free | own)
    if not names:
        raise DataError(f"{where}: the tests call nothing the code could define")
    in_asserts = t_loaded | set(t_called)
    entry = next((n for n in t_called if n in names), names[0])
    return tuple((n, n not in in_asserts) for n in names), entry


@register
@dataclass(frozen=True)
class MbppScorer(SandboxedScorer):
    """Pass/fail of the extracted code against MBPP's asserts, run in the split sandbox."""

    name: ClassVar[str] = "mbpp"
    revision: ClassVar[int] = 1

    tests_field: str = "test_list"
    setup_field: str = "test_setup_code"
    reference_field: str = "answer"  # the reference solution: Sample.target (the spec's `answer: code`)

    def _text(self, sample: Sample, name: str) -> Any:
        if name == "answer":
            return sample.target
        if name not in sample.fields:
            raise DataError(f"sample {sample.id}: the mbpp scorer needs the field {name!r}")
        return sample.fields[name]

    def _prepare(self, sample: Sample, record: Record) -> Prepared:
        tests = self._text(sample, self.tests_field)
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise DataError(f"sample {sample.id}: field {self.tests_field!r} must be a list of assert lines")
        setup = self._text(sample, self.setup_field) if self.setup_field in sample.fields else ""
        reference = self._text(sample, self.reference_field)
        if not isinstance(setup, str) or not isinstance(reference, str):
            raise DataError(f"sample {sample.id}: {self.setup_field!r} and the reference must be text")
        setup = setup.replace("\r\n", "\n")
        asserts = "\n".join(t.strip() for t in tests) + "\n"
        binds, entry = bindings(setup, asserts, reference.replace("\r\n", "\n"), f"sample {sample.id}")
        found = self._extract(between_markers(record.output or ""), None, entry)
        if isinstance(found, Prepared):
            return found
        return Prepared(found.code, found.code, (setup + "\n" if setup.strip() else "") + asserts, binds, "", "")
