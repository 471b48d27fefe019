"""The result cache's store: one SQLite file (stdlib sqlite3, WAL mode) plus content-addressed files.

    <cache dir>/results.sqlite   one row per cached result: key, when it was obtained, target, endpoint
    <cache dir>/files/           artifacts of cached results, named <sha256><ext> (as an output's files/)

Why SQLite in WAL mode: a lookup is one primary-key read (a few microseconds, flat in the entry
count: bench/bench_cache.py); readers never block the writer and two runs can share one cache
(writers queue behind `busy_timeout`); each put is its own transaction, so a run killed with
SIGKILL leaves every committed entry readable and loses at most the put it was writing.
`synchronous=NORMAL` skips the fsync per commit (WAL stays consistent; a power cut may lose the
newest entries, which are only a cache).

What goes in is what a record holds after the redactor (batchrun.run.caching decides what is
cacheable): never an error, never a request whose arguments or headers use `${{ env.X }}`.
Keys are computed by batchrun.output.cachekey.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from batchrun.errors import BatchrunError

__all__ = ["DB_NAME", "CacheStats", "Entry", "ResultCache", "cache_dir"]

DB_NAME = "results.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000  # another run's write transaction is short; waiting beats failing a put

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key BLOB NOT NULL UNIQUE,   -- sha256 of the request's canonical form (batchrun.output.cachekey)
    created REAL NOT NULL,      -- Unix seconds when the result was obtained
    target TEXT NOT NULL,       -- the base URL it came from ("local": the embedded server)
    endpoint TEXT NOT NULL,
    size INTEGER NOT NULL,      -- bytes of payload, for stats and size-bounded pruning
    payload BLOB NOT NULL       -- JSON: result, logs, metrics, timing, artifacts... (see Entry)
);
CREATE INDEX IF NOT EXISTS results_created ON results (created);
"""


def _set_up(db: sqlite3.Connection, path: Path) -> None:
    """WAL mode, the schema and its version: idempotent, so it is simply tried again while another
    process sets up the same new file. Two runs opening a fresh cache at once got "database is
    locked" at once about one time in ten: SQLite does not wait out busy_timeout for these (a
    journal-mode change, a schema write racing another's), so the wait is here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            # 8 MB of page cache holds every interior B-tree page of a million entries, so a
            # lookup reads only its two leaf pages (bench/bench_cache.py); the default is 2 MB.
            db.execute("PRAGMA cache_size = -8192")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise BatchrunError(
                    f"the result cache {path} was written by a newer batchrun (format {version}); "
                    "use another cache folder (BATCHRUN_CACHE_DIR) or `batchrun cache clear`")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def cache_dir(scope: str, environ: Mapping[str, str], cwd: Path | None = None) -> Path:
    """Where a scope's cache lives. BATCHRUN_CACHE_DIR overrides both scopes (CI, tests);
    project: .batchrun/cache under the working directory (beside the default outputs/);
    user: $XDG_CACHE_HOME/batchrun, else ~/.cache/batchrun."""
    override = environ.get("BATCHRUN_CACHE_DIR", "").strip()
    if override:
        return Path(override)
    if scope == "user":
        base = environ.get("XDG_CACHE_HOME", "").strip()
        return (Path(base) if base else Path.home() / ".cache") / "batchrun"
    return (cwd or Path.cwd()) / ".batchrun" / "cache"


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One cached result. `data` holds the record fields a hit reuses (result, logs, metrics,
    request_id, attempts, latency_s, queue_s, served_from, inputs, artifacts, cost_usd, output)."""

    created: float
    target: str
    endpoint: str
    data: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class CacheStats:
    path: Path
    entries: int
    payload_bytes: int
    file_bytes: int  # the database files (with its WAL) and the artifact files
    oldest: float | None
    newest: float | None
    by_target: dict[str, int]
    by_endpoint: dict[str, int]


class ResultCache:
    """One cache folder. Use as a context manager; every method is synchronous and short."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / DB_NAME
        self.files = directory / "files"
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> ResultCache:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self) -> bool:
        return self.path.exists()

    def open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level None): each put is its own short transaction.
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                _set_up(db, self.path)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise BatchrunError(f"cannot open the result cache {self.path}: {exc}") from None
        except OSError as exc:
            raise BatchrunError(f"cannot create the result cache folder {self.dir}: {exc.strerror or exc}") from None
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("Cannot use a result cache that is not open.")
        return self._db

    # ---- lookups and puts ------------------------------------------------------------------

    def get(self, key: bytes, *, max_age_s: float | None = None, now: float | None = None) -> Entry | None:
        """The entry under `key`, unless it is older than `max_age_s` (an expired entry stays until
        it is replaced or pruned: another spec's TTL may still accept it)."""
        row = self.db.execute("SELECT created, target, endpoint, payload FROM results WHERE key = ?",
                              (key,)).fetchone()
        if row is None:
            return None
        created, target, endpoint, payload = row
        if max_age_s is not None and created < (time.time() if now is None else now) - max_age_s:
            return None
        return Entry(created, target, endpoint, orjson.loads(payload))

    def put(self, key: bytes, entry: Entry) -> None:
        """Store (or replace) `entry`; a failure is the caller's to report (a full disk must not
        stop a run: batchrun.run.caching turns it into one warning)."""
        payload = orjson.dumps(entry.data)
        self.db.execute(
            "INSERT INTO results (key, created, target, endpoint, size, payload) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET created = excluded.created, target = excluded.target, "
            "endpoint = excluded.endpoint, size = excluded.size, payload = excluded.payload",
            (key, entry.created, entry.target, entry.endpoint, len(payload), payload),
        )

    def put_many(self, items: Iterable[tuple[bytes, Entry]]) -> int:
        """Many puts in one transaction (bench/bench_cache.py fills a million entries this way)."""
        rows = []
        for key, entry in items:
            payload = orjson.dumps(entry.data)
            rows.append((key, entry.created, entry.target, entry.endpoint, len(payload), payload))
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO results (key, created, target, endpoint, size, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- artifact files -----------------------------------------------------------------------

    def keep_file(self, source: Path, name: str) -> bool:
        """Keep a copy of an artifact file as files/<name> (a hard link when the cache is on the
        same file system, else a copy); False when it cannot (then the entry is not cached)."""
        final = self.files / name
        if final.exists():
            return True
        return _link_or_copy(source, final, self.files)

    def place_file(self, name: str, dest: Path) -> bool:
        """Put cached artifact files/<name> at `dest` (an output's files/ folder); False when the
        cache no longer has it (pruned or deleted by hand)."""
        if dest.exists():
            return True
        source = self.files / name
        if not source.exists():
            return False
        return _link_or_copy(source, dest, dest.parent)

    # ---- maintenance (`batchrun cache`) --------------------------------------------------------

    def stats(self) -> CacheStats:
        db = self.db
        entries, size, oldest, newest = db.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(created), max(created) FROM results").fetchone()
        by_target = dict(db.execute("SELECT target, count(*) FROM results GROUP BY target ORDER BY 2 DESC"))
        by_endpoint = dict(db.execute("SELECT endpoint, count(*) FROM results GROUP BY endpoint ORDER BY 2 DESC"))
        return CacheStats(self.dir, entries, size, self._disk_bytes(), oldest, newest, by_target, by_endpoint)

    def prune(self, *, older_than_s: float | None = None, max_bytes: int | None = None,
              now: float | None = None) -> int:
        """Delete entries older than `older_than_s`, then the oldest until the payloads fit in
        `max_bytes`; then the artifact files no entry refers to. Returns the entries deleted."""
        now = time.time() if now is None else now
        deleted = 0
        with self._transaction():
            if older_than_s is not None:
                deleted += self.db.execute("DELETE FROM results WHERE created < ?", (now - older_than_s,)).rowcount
            if max_bytes is not None:
                total = self.db.execute("SELECT coalesce(sum(size), 0) FROM results").fetchone()[0]
                if total > max_bytes:
                    # The newest entries that fit stay: walk from the newest, keep while under the bound.
                    cutoff = None
                    kept = 0
                    for created, size in self.db.execute("SELECT created, size FROM results ORDER BY created DESC"):
                        if kept + size > max_bytes:
                            cutoff = created
                            break
                        kept += size
                    if cutoff is not None:
                        deleted += self.db.execute("DELETE FROM results WHERE created <= ?", (cutoff,)).rowcount
        self._drop_unreferenced_files()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def clear(self) -> int:
        """Delete every entry and artifact file."""
        with self._transaction():
            deleted = self.db.execute("DELETE FROM results").rowcount
        shutil.rmtree(self.files, ignore_errors=True)
        self.db.execute("VACUUM")
        return deleted

    def _drop_unreferenced_files(self) -> None:
        if not self.files.is_dir():
            return
        referenced: set[str] = set()
        for (payload,) in self.db.execute("SELECT payload FROM results WHERE payload LIKE '%\"cache_file\"%'"):
            for artifact in orjson.loads(payload).get("artifacts") or ():
                if isinstance(artifact, dict) and isinstance(artifact.get("cache_file"), str):
                    referenced.add(artifact["cache_file"])
        for path in self.files.iterdir():
            if path.name not in referenced and not path.name.startswith("."):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _disk_bytes(self) -> int:
        total = 0
        for path in (self.path, self.path.with_name(DB_NAME + "-wal")):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        if self.files.is_dir():
            for path in self.files.iterdir():
                with contextlib.suppress(OSError):
                    total += path.stat().st_size
        return total


def _link_or_copy(source: Path, final: Path, folder: Path) -> bool:
    """`source` at `final`, whole or not at all (a temporary name renamed into place)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".cache-", suffix=".part")
        os.close(fd)
        tmp = Path(name)
        try:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed: copy the bytes
                shutil.copyfile(source, tmp)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    except OSError:
        return False
    return True
