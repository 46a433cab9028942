"""Writing run files so that a full disk gives one clear error and never a half-written file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from proctor.errors import ProctorError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteError(ProctorError):
    """A run file could not be written (disk full, quota, file size limit, permissions)."""


def write_error(path: Path | str, exc: OSError) -> WriteError:
    """One line: which file, why, and what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _NO_SPACE:
        advice = "free some space, then continue with `proctor run ... -r latest`; what was written is kept"
    else:
        advice = "check the folder's permissions, then continue with `proctor run ... -r latest`"
    return WriteError(f"cannot write {path}: {reason}; {advice}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def as_write_error(exc: OSError, folder: Path) -> WriteError | None:
    """A disk-full OSError raised by code outside the engine (report writers), as a WriteError."""
    if exc.errno not in _NO_SPACE:
        return None
    return write_error(exc.filename or f"a file in {folder}", exc)
