"""The Scorer protocol and the registry that builds scorers from config (`name` + `params`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, ClassVar, Literal, Mapping, Protocol, TypeVar, Union, runtime_checkable

from proctor.config.suggest import did_you_mean
from proctor.core import Record, Sample, Score
from proctor.errors import ConfigError
from proctor.registry import Registry


@runtime_checkable
class Scorer(Protocol):
    """Turns one successful record of one sample into a Score (failed records never reach it)."""

    @property
    def name(self) -> str:
        """The registry name ("choice", "exact", ...)."""
        ...

    def check_sample(self, sample: Any) -> None:
        """Refuse (DataError) a sample this scorer could never score (a gold it cannot read), when
        the file is read, before any request; by default every sample is fine."""

    @property
    def version(self) -> str:
        """Changes whenever the scorer's behaviour (code or params) changes; kept in the run manifest."""
        ...

    def score(self, sample: Sample, record: Record) -> Score: ...


class BaseScorer:
    """Shared plumbing of the built-in scorers, which are frozen dataclasses of their params.

    Subclasses set `name` and `revision`; bump `revision` whenever a change to the code
    can change a score, so stored scores made by the old code are recognisably stale.
    """

    name: ClassVar[str]
    revision: ClassVar[int]
    # How a generated answer is read, as `proctor list` says it.
    reads: ClassVar[str] = "answer extracted"
    # False for a scorer that judges a response without a gold answer (IFEval's checkers):
    # only such a scorer may read a spec whose rows are answerless.
    needs_answer: ClassVar[bool] = True

    def missing_extra(self) -> str | None:
        """What to install for this scorer to run (one line), or None. Checked only for the
        datasets of a run, so a core install runs everything that needs no extra."""
        return None

    @property
    def version(self) -> str:
        """`<revision>.<hash of the params>`: e.g. "1.3f2a9c1e"."""
        # Init fields only: a scorer may cache derived state (a compiled regex) in others.
        fields: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(self) if dataclasses.is_dataclass(self) else ()
        params = {f.name: getattr(self, f.name) for f in fields if f.init}
        blob = json.dumps([self.name, params], sort_keys=True, default=str)
        return f"{self.revision}.{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


_REGISTRY: Registry[type[Any]] = Registry("scorer")
_S = TypeVar("_S", bound=type[Any])


def register(cls: _S) -> _S:
    """Class decorator: make a scorer dataclass available to `get_scorer` under `cls.name`."""
    _REGISTRY.add(cls.name, cls)
    return cls


def scorer_names() -> list[str]:
    return _REGISTRY.names()


def scorer_class(name: str) -> type[Any]:
    """The registered scorer class `name` (ConfigError for an unknown one)."""
    return _REGISTRY.get(name)


def get_scorer(name: str, params: Mapping[str, Any] | None = None) -> Scorer:
    """The scorer `name` built with `params`; ConfigError (one line) for an unknown name or bad params."""
    cls = _REGISTRY.get(name)
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in params:
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ConfigError(
                f"scorer {name!r} has no param {key!r}{did_you_mean(key, fields)}; its params: {known}"
            )
    missing = [
        f.name
        for f in fields.values()
        if f.name not in params and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"scorer {name!r} needs the param {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        hint = hints[key]
        if not _is_instance(value, hint):
            raise ConfigError(
                f"scorer {name!r} param {key!r} must be {_describe(hint)}, got {type(value).__name__} {value!r}"
            )
    scorer: Scorer = cls(**params)  # __post_init__ checks values (a regex that does not compile)
    return scorer


def _is_instance(value: Any, hint: Any) -> bool:
    """A small runtime type check for the param types scorers use (bool, int, str, Literal, unions)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if origin is Union or origin is types.UnionType:
        return any(_is_instance(value, arg) for arg in typing.get_args(hint))
    if hint is float:
        # YAML writes 1 for 1.0; bool is an int but never a number here.
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a type this check does not know: the dataclass validates it


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin is Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))
