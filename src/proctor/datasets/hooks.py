"""Row hooks: a spec's `fields.hook: module:function` (or `file.py:function`) for rows that need code."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from proctor.errors import ConfigError


def _split(spec: str) -> tuple[str, str]:
    module, _, function = spec.rpartition(":")
    return module, function


def _is_file(module: str) -> bool:
    return module.endswith(".py") or "/" in module or "\\" in module


def _module(module: str) -> ModuleType:
    if _is_file(module):
        path = Path(module).expanduser()
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = 0
        return _file_module(module, stamp)
    return _import(module)


@lru_cache(maxsize=64)
def _file_module(module: str, _stamp: int) -> ModuleType:
    """A hook file as a module; read again when the file changes (its mtime is in the key)."""
    path = Path(module).expanduser()
    if not path.is_file():
        raise ConfigError(f"hook file {path} does not exist")
    name = f"proctor_hook_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:  # pragma: no cover - a .py file always has one
        raise ConfigError(f"hook file {path} cannot be imported")
    loaded = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = loaded
    try:
        loader_spec.loader.exec_module(loaded)
    except Exception as err:  # noqa: BLE001 - a user's file: one line, not its traceback
        del sys.modules[name]
        raise ConfigError(f"hook file {path} failed to import: {type(err).__name__}: {err}") from None
    return loaded


@lru_cache(maxsize=64)
def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"hook module {module!r} cannot be imported ({err}); "
                          "write module:function for an installed module or path/to/file.py:function") from None


def load_hook(spec: str) -> Callable[[dict[str, Any]], Any]:
    """The function a `module:function` hook names; ConfigError (one line) when there is none."""
    module, function = _split(spec)
    found = getattr(_module(module), function, None)
    if not callable(found):
        raise ConfigError(f"hook {spec}: {module} has no function {function!r}")
    return found  # type: ignore[no-any-return]


def hook_file(spec: str) -> Path | None:
    """The source file of a hook (hashed into the dataset's version), None for a built-in module."""
    module, _ = _split(spec)
    if _is_file(module):
        return Path(module).expanduser().resolve()
    found = getattr(_module(module), "__file__", None)
    return Path(found).resolve() if found else None
