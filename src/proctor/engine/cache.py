"""The response cache: SQLite (WAL) keyed by Request.key(model identity)."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from proctor.cachedir import cache_dir
from proctor.core import Response
from proctor.errors import ProctorError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# New answers are written in batches: one transaction per answer (a commit, a WAL write) cost
# more CPU than the HTTP request itself at hundreds of answers a second. A crash loses at most
# this much of the cache; the records (written per answer) keep the run's progress.
FLUSH_EVERY_S = 0.5
FLUSH_EVERY_N = 1024


class CacheError(ProctorError):
    """The cache file cannot be opened at all (a folder that is not writable)."""


def default_cache_path() -> Path:
    """$PROCTOR_CACHE_DIR/responses.sqlite, else the user cache dir."""
    return cache_dir() / "responses.sqlite"


@dataclass(frozen=True)
class CacheStats:
    path: Path
    entries: int
    bytes: int


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class _Corrupt(sqlite3.DatabaseError):
    """The file opens but is not a cache this version can trust."""


class ResponseCache:
    """Only successful responses are stored.

    Never silently wrong: a file that fails SQLite's check or has another schema
    is reported, moved aside and rebuilt; an entry whose checksum does not match
    is reported and dropped; an error while the run works (disk full, file
    damaged under us) is reported once and the run goes on without the cache.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        self.disabled = False
        self._pending: list[tuple[str, str, str, float]] = []  # put() but not yet written
        self._flushed_at = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(
                f"cannot open the response cache {self.path}: {exc}; set PROCTOR_CACHE_DIR to a writable "
                "folder or run with --no-cache"
            ) from None

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, unreadable folder, I/O error: not the file's fault, keep it
            broken = self.path.with_suffix(f".corrupt-{int(time.time())}")
            log.warning(
                "response cache %s is corrupted or unusable (%s); moved to %s and rebuilt", self.path, exc, broken
            )
            self.path.replace(broken)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise _Corrupt(f"integrity check failed: {row[0] if row else 'no answer'}")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            (schema,) = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if schema != str(SCHEMA_VERSION):
                raise _Corrupt(f"cache schema {schema}, this Proctor writes {SCHEMA_VERSION}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL, digest TEXT NOT NULL, created REAL NOT NULL)"
            )
            conn.commit()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _fail(self, what: str, exc: sqlite3.Error) -> None:
        if not self.disabled:
            log.warning(
                "response cache %s: %s failed (%s); continuing without the cache for this run", self.path, what, exc
            )
        self.disabled = True

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(keys)
        found: dict[str, Response] = {}
        self.flush()
        if self.disabled:
            return found
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, value, digest FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, value, digest in rows:
                    response = self._decode(key, value, digest)
                    if response is not None:
                        found[key] = response
        except sqlite3.Error as exc:
            self._fail("reading", exc)
            return {}
        return found

    def _decode(self, key: str, value: str, digest: str) -> Response | None:
        try:
            if _digest(value) != digest:
                raise ValueError("checksum mismatch")
            return Response.from_json(json.loads(value))
        except (ValueError, TypeError) as exc:
            log.warning("response cache %s: entry %s is damaged (%s); dropped", self.path, key[:12], exc)
            self._conn.execute("DELETE FROM responses WHERE key = ?", (key,))
            self._conn.commit()
            return None

    def put(self, key: str, response: Response) -> None:
        if not response.ok or self.disabled:
            return
        value = json.dumps(response.to_json(), ensure_ascii=False)
        self._pending.append((key, value, _digest(value), time.time()))
        if len(self._pending) >= FLUSH_EVERY_N or time.monotonic() - self._flushed_at >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write the answers put() since the last flush, in one transaction."""
        pending, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        if not pending or self.disabled:
            return
        try:
            self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", pending)
            self._conn.commit()
        except sqlite3.Error as exc:
            self._fail("writing", exc)

    def other_run_used(self, identity: str, run_id: str) -> bool:
        """Whether another run than `run_id` stored answers for this (unverified) model identity;
        notes this run's use. Only a digest of the identity is kept."""
        if self.disabled:
            return False
        name = f"unverified:{_digest(identity)}"
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            if row is None or row[0] != run_id:
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, run_id))
                self._conn.commit()
        except sqlite3.Error as exc:
            self._fail("reading", exc)
            return False
        return row is not None and row[0] != run_id

    def stats(self) -> CacheStats:
        self.flush()
        (entries,) = self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return CacheStats(self.path, int(entries), size)

    def clear(self) -> int:
        self.flush()
        (entries,) = self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()
        self._conn.execute("DELETE FROM responses")
        self._conn.commit()
        self._conn.execute("VACUUM")
        return int(entries)

    def close(self) -> None:
        self.flush()
        self._conn.close()


def open_cache() -> ResponseCache | None:
    """The user's response cache, or None (with one warning) when it cannot be opened: a run
    goes on without it rather than failing."""
    try:
        return ResponseCache()
    except CacheError as exc:
        log.warning("%s; continuing without it", exc)
        return None
