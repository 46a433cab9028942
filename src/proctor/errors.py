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


class RunInterrupted(ProctorError):
    """Ctrl-C during a run: what finished is saved; the message says how to continue."""

    exit_code = 130

    def __init__(self, run_id: str, work_dir: str) -> None:
        work = "" if work_dir.rstrip("/") == "outputs" else f" -w {work_dir}"
        super().__init__(
            f"interrupted: every finished sample is saved in run {run_id}; "
            f"continue it with the same command plus{work} -r {run_id}"
        )


class MissingExtraError(BackendError):
    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this needs the optional package '{module}': pip install 'proctor[{extra}]'"
        )
