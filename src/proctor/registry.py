"""Named extension points (scorers, metrics, prompt presets): one registry type for all.

A registry is filled when its module is imported (built-ins) or by a plugin before specs are
read; a name is registered once; an unknown name is one ConfigError line with the close matches
and the known names, raised when a spec or config is read, never when it runs.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Values by name; `what` names the kind in messages ("scorer", "metric", "prompt preset")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, value: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = value
        return value

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry `name`; ConfigError (one line, with close matches) when there is none."""
        found = self._entries.get(name)
        if found is None:
            from proctor.config.suggest import did_you_mean
            from proctor.errors import ConfigError

            raise ConfigError(f"unknown {self.what} {name!r}{did_you_mean(name, self._entries)}; "
                              f"known {self.what}s: {', '.join(self.names())}")
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
