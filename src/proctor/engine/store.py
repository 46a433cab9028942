"""The predictions store: one JSONL file per (model, dataset), appended and flushed per record."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO

from proctor.core import Record
from proctor.errors import ProctorError

log = logging.getLogger(__name__)


class PredictionStore:
    """Append-only records; on reading, the last record of a sample id wins.

    A line cut short by a crash (no trailing newline, or not valid JSON) is
    dropped and cut from the file, so it is never parsed as a result.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def load(self) -> dict[str, Record]:
        if not self.path.exists():
            return {}
        records: dict[str, Record] = {}
        good_bytes = 0
        with self.path.open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a half-written last line
                try:
                    record = Record.from_json(json.loads(raw))
                except (ValueError, TypeError):
                    break
                records[record.sample_id] = record
                good_bytes += len(raw)
        size = self.path.stat().st_size
        if good_bytes < size:
            log.warning("%s: dropping %d bytes of a record cut short by a crash", self.path, size - good_bytes)
            with self.path.open("r+b") as f:
                f.truncate(good_bytes)
        return records

    def append(self, record: Record) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        line = json.dumps(record.to_json(), ensure_ascii=False) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            # Disk full mid-line: cut the partial line so what was written stays valid.
            self._truncate_partial()
            raise ProctorError(f"cannot write {self.path}: {exc.strerror or exc}; free space and resume with -r") from None

    def _truncate_partial(self) -> None:
        try:
            if self._file is not None:
                self._file.close()
            self._file = None
            with self.path.open("r+b") as f:
                data = f.read()
                cut = data.rfind(b"\n") + 1
                f.truncate(cut)
        except OSError:
            pass

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
