"""The predictions store: one JSONL file per (model, dataset), appended and flushed per record."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proctor.core import Record
from proctor.engine.diskio import write_error
from proctor.errors import ProctorError
from proctor.prompts.variants import current_item_id

log = logging.getLogger(__name__)

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(Record))


def _plain(value: Any) -> Any:
    """json.dumps' fallback for what a record may hold besides JSON types."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def record_line(record: Record) -> bytes:
    """One JSONL line: the same JSON as json.dumps(record.to_json()), made without asdict.

    asdict deep-copies the prompt and every nested value: about half a millisecond
    per record, which on an API run with hundreds of answers a second is CPU
    taken from the event loop that sends the requests.
    """
    data = {name: getattr(record, name) for name in _RECORD_FIELDS}
    if data["top_logprobs"] is None:
        del data["top_logprobs"]  # asked of judges only: other records keep their lines as they were
    return (json.dumps(data, ensure_ascii=False, default=_plain) + "\n").encode("utf-8")


class PredictionStore:
    """Append-only records; on reading, the last record of a sample id wins.

    Each record is one `os.write` of a whole line on an O_APPEND descriptor, so
    a crash leaves at most one line cut short. Such a line (no trailing newline,
    or not valid JSON) is dropped and cut from the file on load, so it is never
    parsed as a result. When a write fails (disk full) the partial line is cut
    at once and the error is one clear line; the earlier records stay valid.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._good_size = 0  # bytes of whole, valid lines: where a failed write is cut back to

    def load(self, *, repair: bool = True) -> dict[str, Record]:
        """The records by item id; `repair=False` leaves a half-written line in place (dry runs)."""
        if not self.path.exists():
            return {}
        if not self.path.is_file():  # a device or a folder: reading it could never end
            raise ProctorError(f"{self.path} is not a regular file; move it away and run again")
        records: dict[str, Record] = {}
        good_bytes = 0
        damaged: list[int] = []
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    break  # a half-written last line
                try:
                    record = Record.from_json(json.loads(raw))
                except (ValueError, TypeError):
                    # A damaged line in the middle (an editor, a disk error) costs that line
                    # only: its item has no record and is sent again by -r.
                    damaged.append(number)
                    good_bytes += len(raw)
                    continue
                item_id = current_item_id(record.item_id, record.sample_id)
                if item_id != record.item_id:  # an older run's repeat (`#n<j>`): the same item today
                    record = dataclasses.replace(record, item_id=item_id)
                records[item_id] = record
                good_bytes += len(raw)
        if damaged:
            shown = ", ".join(map(str, damaged[:5])) + (", ..." if len(damaged) > 5 else "")
            log.warning("%s: skipped %d damaged line(s) (line %s); their items count as not answered",
                        self.path, len(damaged), shown)
        size = self.path.stat().st_size
        if good_bytes < size and repair:
            log.warning("%s: dropping %d bytes of a record cut short by a crash", self.path, size - good_bytes)
            try:
                with self.path.open("r+b") as f:
                    f.truncate(good_bytes)
            except OSError as exc:
                raise write_error(self.path, exc) from None
        return records

    def append(self, record: Record) -> None:
        data = record_line(record)
        try:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            view = memoryview(data)
            while view:  # a regular file takes it all at once; loop for the rare short write
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self._cut_partial_line()
            raise write_error(self.path, exc) from None
        self._good_size += len(data)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._good_size = os.fstat(self._fd).st_size

    def _cut_partial_line(self) -> None:
        """Cut what a failed write left behind, so the file ends with a whole line."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and os.fstat(fd).st_size > self._good_size:
                os.ftruncate(fd, self._good_size)
        except OSError as exc:  # the next load() cuts it instead
            log.debug("%s: could not cut a partial line: %s", self.path, exc)
        finally:
            os.close(fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            log.debug("%s: fsync failed: %s", self.path, exc)
        finally:
            os.close(fd)
