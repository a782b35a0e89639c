"""The ledger: what each earlier sync carried, so the next one sends only what is new.

One SQLite file per (source, destination) pair. Per source run it keeps the
destination's state (for example the MLflow run id, or the committed sizes
of the event files written) and, per kind and tag, how many items are
already in the destination. The engine saves an entry after every commit of
the destination, so a sync that dies loses at most the items since the last
commit, and those are sent again (destinations make a repeated write of the
same items harmless; see :mod:`tbx.converters.base`).

Several worker threads share one ledger; writes are serialized by a lock and
each is its own transaction (WAL journal, so a kill leaves the last commit).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    name TEXT,
    state TEXT,
    counts TEXT,
    meta TEXT,
    status TEXT,
    error TEXT,
    updated REAL
);
CREATE TABLE IF NOT EXISTS info (k TEXT PRIMARY KEY, v TEXT);
"""


def default_path(source: str, destination: str) -> str:
    """``$TBX_STATE_DIR`` (default ``~/.local/state/tbx``) ``/sync/<hash of the pair>.sqlite``."""
    base = os.environ.get("TBX_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state"), "tbx")
    digest = hashlib.sha256(f"{source}\n{destination}".encode()).hexdigest()[:16]
    return os.path.join(base, "sync", f"{digest}.sqlite")


class Entry:
    """A run's ledger entry: destination state and per-(kind, tag) counts."""

    def __init__(self, state: dict[str, Any] | None = None, counts: dict[str, dict[str, int]] | None = None,
                 meta: str | None = None, status: str | None = None) -> None:
        self.state = state
        self.counts = counts or {}
        self.meta = meta
        self.status = status

    def count(self, kind: str, tag: str) -> int:
        return self.counts.get(kind, {}).get(tag, 0)


class Ledger:
    def __init__(self, path: str, source: str, destination: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"ledger {path} is not a tbx sync ledger ({exc})") from exc
        pair = json.dumps([source, destination])
        row = self._db.execute("SELECT v FROM info WHERE k='pair'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO info VALUES ('pair', ?)", (pair,))
        elif row[0] != pair:
            src, dst = json.loads(row[0])
            raise ValueError(f"ledger {path} belongs to the sync {src} -> {dst}, not {source} -> {destination}; "
                             "give another --ledger file")

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT state, counts, meta, status FROM runs WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        return Entry(json.loads(row[0]) if row[0] else None, json.loads(row[1] or "{}"), row[2], row[3])

    def save(self, key: str, name: str, entry: Entry, error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                (key, name, json.dumps(entry.state) if entry.state is not None else None,
                 json.dumps(entry.counts), entry.meta, entry.status, error, time.time()))

    def keys(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM runs ORDER BY key")]

    def close(self) -> None:
        with self._lock:
            self._db.close()
