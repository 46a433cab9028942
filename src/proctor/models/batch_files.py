"""Batch API input files and the run folder's record of them (no network here).

A batch line is OpenAI's batch input format, one JSON object per line:
`{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`, the body
exactly as the online request sends it. A custom id is a digest of the model's identity, the
url and the body (plus `-<k>` for the k-th copy of the same body), so a resumed run finds the
lines it already submitted by its pending requests alone.

`state.json` in the model's batch folder lists every submitted file: its local name, its
file id, its batch id and whether its results were delivered. It is rewritten atomically after
each step (upload, batch creation, results), before waiting, so a SIGKILL at any point leaves
a state a later `-r` continues from. It holds ids only, never the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence


STATE_FILE = "state.json"
STATE_VERSION = 1


def body_digest(identity: str, url: str, content: bytes) -> str:
    """The custom id stem of a request: sha256 of identity, url and the encoded body."""
    digest = hashlib.sha256()
    for part in (identity.encode("utf-8"), url.encode("utf-8"), content):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


def batch_line(custom_id: str, url: str, content: bytes) -> bytes:
    """One line of a batch input file; `content` is the body as the online request encodes it."""
    head = json.dumps({"custom_id": custom_id, "method": "POST", "url": url}, separators=(",", ":"))
    return head[:-1].encode("utf-8") + b',"body":' + content + b"}\n"


def split_sizes(sizes: Sequence[int], max_requests: int, max_bytes: int) -> list[range]:
    """Consecutive index ranges of lines whose count and total size fit one file each.

    A line larger than `max_bytes` alone is put in a file of its own (the provider judges it).
    """
    parts: list[range] = []
    start, count, total = 0, 0, 0
    for i, size in enumerate(sizes):
        if count and (count >= max_requests or total + size > max_bytes):
            parts.append(range(start, i))
            start, count, total = i, 0, 0
        count += 1
        total += size
    if count:
        parts.append(range(start, len(sizes)))
    return parts


@dataclass
class BatchEntry:
    """One submitted (or about to be submitted) input file and what became of it."""

    name: str  # the local file stem: `<name>.jsonl` (the lines) and `<name>.ids` (custom ids)
    url: str  # the endpoint every line targets
    lines: int
    bytes: int
    round: int = 0  # 0: first submission; k: the k-th retry of failed lines in a new batch
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None  # the batch's last known status
    output_file_id: str | None = None
    error_file_id: str | None = None
    delivered: bool = False  # every claimed line's result went to the run's records

    @classmethod
    def from_json(cls, data: Any) -> BatchEntry:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class BatchState:
    """The model's batch folder: `state.json`, the input files, downloaded results."""

    folder: Path
    entries: list[BatchEntry] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path) -> BatchState:
        path = folder / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(folder)
        except (OSError, ValueError) as exc:
            from proctor.errors import ConfigError

            raise ConfigError(f"{path}: unreadable ({exc}); move it away to submit the requests again") from None
        return cls(folder, [BatchEntry.from_json(e) for e in data.get("entries", []) if isinstance(e, dict)])

    def save(self) -> None:
        data = {"version": STATE_VERSION, "entries": [asdict(e) for e in self.entries]}
        _write_atomic(self.folder / STATE_FILE, [json.dumps(data, indent=1).encode("utf-8")])

    def next_name(self) -> str:
        return f"batch-{len(self.entries) + 1:04d}"

    def input_path(self, entry: BatchEntry) -> Path:
        return self.folder / f"{entry.name}.jsonl"

    def result_path(self, entry: BatchEntry, kind: str) -> Path:
        return self.folder / f"{entry.name}.{kind}.jsonl"

    def write_input(self, entry: BatchEntry, ids: Sequence[str], lines: Sequence[bytes]) -> None:
        """The input file and its custom ids, both whole (atomic), before anything is uploaded."""
        _write_atomic(self.folder / f"{entry.name}.ids", ["".join(f"{i}\n" for i in ids).encode("ascii")])
        _write_atomic(self.input_path(entry), lines)

    def write_result(self, entry: BatchEntry, kind: str, content: bytes) -> None:
        _write_atomic(self.result_path(entry, kind), [content])

    def ids(self, entry: BatchEntry) -> list[str]:
        try:
            text = (self.folder / f"{entry.name}.ids").read_text(encoding="utf-8")
        except OSError:
            return []
        return text.split()

    def live(self) -> Iterator[BatchEntry]:
        """Entries whose results have not been delivered yet (a resumed run waits for them)."""
        return (e for e in self.entries if not e.delivered)


def _write_atomic(path: Path, chunks: Sequence[bytes]) -> None:
    """Write beside `path`, fsync, then rename: a reader (or a resumed run) sees it whole or not
    at all. The `.name.*.tmp` a killed writer leaves is removed by the run lock (engine/rundir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
