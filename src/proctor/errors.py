"""User-facing errors: one line that names the file, key, row or URL and what to do."""

from __future__ import annotations


class ProctorError(Exception):
    """A mistake the user can fix. The CLI prints `error: <message>` and exits 2, no traceback."""

    exit_code = 2


class ConfigError(ProctorError):
    """A bad config file, key, dataset or model name."""


class DataError(ProctorError):
    """Missing or malformed benchmark data."""


class BackendError(ProctorError):
    """The model backend cannot be used at all (unreachable, unauthorised, missing extra)."""


class MissingExtraError(BackendError):
    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this needs the optional package '{module}': pip install 'proctor[{extra}]'"
        )
