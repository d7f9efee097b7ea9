"""Where subscriber counts are kept: a SQLite file in state_dir
(`subscribers.sqlite3`), shared by every worker of the machine (WAL, so
readers never wait for a writer), surviving restarts.

A file of its own behind this small interface rather than the shared index:
that index (SQLite/PostgreSQL, issue 12) had not landed when this was
written; moving the three tables into it changes only this module.

Tables:
    aggregators(day, aggregator, feed_id, path, subscribers, seen)   the latest count
    readers(day, path, hash)          direct readers of today and yesterday, hashed
    reader_days(day, path, readers)   the distinct count of an older day (hashes dropped)
    salts(day, salt)                  today's and yesterday's salt, then deleted
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregators (
    day TEXT NOT NULL, aggregator TEXT NOT NULL, feed_id TEXT NOT NULL, path TEXT NOT NULL,
    subscribers INTEGER NOT NULL, seen REAL NOT NULL,
    PRIMARY KEY (day, aggregator, feed_id, path));
CREATE TABLE IF NOT EXISTS readers (
    day TEXT NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (day, path, hash));
CREATE TABLE IF NOT EXISTS reader_days (
    day TEXT NOT NULL, path TEXT NOT NULL, readers INTEGER NOT NULL, PRIMARY KEY (day, path));
CREATE TABLE IF NOT EXISTS salts (day TEXT PRIMARY KEY, salt BLOB NOT NULL);
"""


@dataclass(frozen=True)
class DayCount:
    day: str
    path: str
    aggregators: Mapping[str, int]     # aggregator name → subscribers (summed over its feed ids)
    readers: int

    @property
    def total(self) -> int:
        return sum(self.aggregators.values()) + self.readers


class SubscriberStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)   # its own transaction (executescript commits)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> SubscriberStore:
        return cls(state_dir / "subscribers.sqlite3")

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (one per thread and process: never shared across a fork)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def salt(self, day: str) -> bytes:
        """The salt of `day`, made at random by the first worker that asks."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO salts VALUES (?, ?)", (day, os.urandom(32)))
            row = db.execute("SELECT salt FROM salts WHERE day = ?", (day,)).fetchone()
        return bytes(row[0])

    def add(self, aggregators: Mapping[tuple[str, str, str, str], tuple[int, float]],
            readers: Iterable[tuple[str, str, str]]) -> None:
        with self._db() as db:
            # The latest count wins, whichever worker saw it.
            db.executemany(
                "INSERT INTO aggregators VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (day, aggregator, feed_id, path) DO UPDATE SET "
                "subscribers = excluded.subscribers, seen = excluded.seen "
                "WHERE excluded.seen >= aggregators.seen",
                [(*key, count, seen) for key, (count, seen) in aggregators.items()])
            db.executemany("INSERT OR IGNORE INTO readers VALUES (?, ?, ?)", list(readers))

    def forget_before(self, day: str) -> None:
        """Days before `day`: hashes become a count, and their salts go."""
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO reader_days SELECT day, path, COUNT(*) FROM readers "
                       "WHERE day < ? GROUP BY day, path", (day,))
            db.execute("DELETE FROM readers WHERE day < ?", (day,))
            db.execute("DELETE FROM salts WHERE day < ?", (day,))

    def days(self, since: str) -> list[DayCount]:
        """Per day (from `since`) and feed path: aggregator counts and direct readers."""
        with self._db() as db:
            agg = db.execute("SELECT day, path, aggregator, SUM(subscribers) FROM aggregators "
                             "WHERE day >= ? GROUP BY day, path, aggregator", (since,)).fetchall()
            fresh = db.execute("SELECT day, path, COUNT(*) FROM readers WHERE day >= ? "
                               "GROUP BY day, path", (since,)).fetchall()
            old = db.execute("SELECT day, path, readers FROM reader_days WHERE day >= ?",
                             (since,)).fetchall()
        by: dict[tuple[str, str], dict[str, int]] = {}
        readers: dict[tuple[str, str], int] = {}
        for day, path, name, count in agg:
            by.setdefault((day, path), {})[name] = int(count)
        for day, path, count in [*old, *fresh]:
            readers[(day, path)] = readers.get((day, path), 0) + int(count)
        keys = sorted(set(by) | set(readers))
        return [DayCount(day, path, by.get((day, path), {}), readers.get((day, path), 0))
                for day, path in keys]
