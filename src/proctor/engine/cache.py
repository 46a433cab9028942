"""The response cache: SQLite (WAL) keyed by Request.key(model identity)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from proctor.core import Response

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def default_cache_path() -> Path:
    root = os.environ.get("PROCTOR_CACHE_DIR")
    if root:
        return Path(root) / "responses.sqlite"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("proctor")) / "responses.sqlite"


@dataclass(frozen=True)
class CacheStats:
    path: Path
    entries: int
    bytes: int


class ResponseCache:
    """Only successful responses are stored; a corrupted file is reported, moved aside and rebuilt."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            broken = self.path.with_suffix(f".corrupt-{int(time.time())}")
            log.warning("response cache %s is corrupted (%s); moved to %s and rebuilt", self.path, exc, broken)
            self.path.replace(broken)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")
            conn.commit()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(keys)
        found: dict[str, Response] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._conn.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                try:
                    found[key] = Response.from_json(json.loads(value))
                except (ValueError, TypeError):
                    log.warning("response cache %s: unreadable entry %s dropped", self.path, key[:12])
                    self._conn.execute("DELETE FROM responses WHERE key = ?", (key,))
        return found

    def put(self, key: str, response: Response) -> None:
        if not response.ok:
            return
        value = json.dumps(response.to_json(), ensure_ascii=False)
        self._conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, value, time.time()))
        self._conn.commit()

    def stats(self) -> CacheStats:
        (entries,) = self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return CacheStats(self.path, entries, size)

    def clear(self) -> int:
        (entries,) = self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()
        self._conn.execute("DELETE FROM responses")
        self._conn.commit()
        self._conn.execute("VACUUM")
        return int(entries)

    def close(self) -> None:
        self._conn.close()
