"""The registry of IFEval instruction checkers by instruction id, and the binding of a row's kwargs to one.

A checker is a plain function `(response, **kwargs) -> bool`; its keyword parameters (with
their annotations) are the instruction's arguments, so a row whose kwargs miss one, add an
unknown one or give the wrong type is refused with one line instead of being checked wrongly.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from proctor.errors import DataError

Checker = Callable[..., bool]

# The two relations the benchmark uses (the paper's "around"/"at most" never occur in the data).
RELATIONS = ("less than", "at least")

CHECKERS: dict[str, Checker] = {}


def checker(instruction_id: str) -> Callable[[Checker], Checker]:
    """Decorator: register `fn` as the checker of `instruction_id` (e.g. "punctuation:no_comma")."""

    def add(fn: Checker) -> Checker:
        if instruction_id in CHECKERS:
            raise ValueError(f"IFEval instruction {instruction_id!r} has two checkers")
        CHECKERS[instruction_id] = fn
        return fn

    return add


def _type_ok(value: Any, annotation: Any) -> bool:
    if annotation in ("int", int):
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in ("str", str):
        return isinstance(value, str)
    if annotation in ("list[str]", list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise TypeError(f"checker parameter type {annotation!r} is not supported")


@dataclass(frozen=True)
class Instruction:
    """One instruction of a prompt with its arguments bound and checked."""

    id: str
    check: Checker
    kwargs: Mapping[str, Any]

    def __call__(self, response: str) -> bool:
        return bool(self.check(response, **self.kwargs))


def bind(instruction_id: str, kwargs: Any, where: str) -> Instruction:
    """The Instruction for one (id, kwargs) pair of a row; DataError (one line, naming `where`) when
    the id has no checker or the kwargs do not fit it. Keys set to null are dropped (the Hugging
    Face copy of the data lists every argument of every instruction, null where unused)."""
    fn = CHECKERS.get(instruction_id)
    if fn is None:
        from proctor.config.suggest import did_you_mean

        hint = did_you_mean(instruction_id, CHECKERS)
        raise DataError(f"{where}: unknown IFEval instruction {instruction_id!r}{hint}")
    if not isinstance(kwargs, Mapping):
        raise DataError(f"{where}: the kwargs of {instruction_id!r} must be an object, got {type(kwargs).__name__}")
    given = {k: v for k, v in kwargs.items() if v is not None}
    params = {name: p for name, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
    for name in given:
        if name not in params:
            known = ", ".join(params) or "none"
            raise DataError(f"{where}: {instruction_id!r} takes no argument {name!r} (its arguments: {known})")
    for name, param in params.items():
        if name not in given:
            raise DataError(f"{where}: {instruction_id!r} needs the argument {name!r}")
        if not _type_ok(given[name], param.annotation):
            raise DataError(f"{where}: {instruction_id!r} argument {name!r} must be {param.annotation}, "
                            f"got {type(given[name]).__name__} {given[name]!r}")
        if name.endswith("relation") and given[name] not in RELATIONS:
            raise DataError(f"{where}: {instruction_id!r} argument {name!r} must be one of "
                            f"{' or '.join(map(repr, RELATIONS))}, got {given[name]!r}")
    return Instruction(instruction_id, fn, given)
