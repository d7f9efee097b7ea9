"""Where subscriber counts are kept: the durable part of the index
(index/durable.py: `state_dir/state.sqlite3`, or the PostgreSQL schema
`feedsvc_state` shared by every machine of a cluster), beside the upstream
and WebSub state, so that they survive restarts and every instance reads and
adds to the same counts. The tables and the statements that write them are
index/subscriber_tables.py's; this module is what the recorder
(subscribers.py), `feedsvc stats` and the admin page use.

The database is opened on first use (StateStore), so a service that starts
while it is unreachable serves, and counts again once it is back; every
method raises IndexUnavailable meanwhile. An older feedsvc's
`state_dir/subscribers.sqlite3` is imported once, on first use, and renamed
`*.imported` (index/sources.py, with the other files of older versions).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from feedsvc import health
from feedsvc.config import Config
from feedsvc.index import durable, subscriber_tables
from feedsvc.index.db import IndexUnavailable
from feedsvc.index.sources import SUBSCRIBERS_FILE, StateStore, place, store_for


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
    def __init__(self, config: Config) -> None:
        self.config = config

    def _state(self) -> StateStore:
        # Each call: the first that reaches the database imports the older file.
        return store_for(self.config)

    def import_older(self) -> None:
        """Import an older version's `subscribers.sqlite3` now, if there is one
        (at a server's start, rather than at its first count)."""
        if (self.config.state_dir / SUBSCRIBERS_FILE).is_file():
            self._state()

    def report(self, error: IndexUnavailable | None) -> None:
        """A write failed (or worked again): /status's `state_writes`, under the
        one name every writer of the durable state reports (health.py)."""
        where = place(self.config)
        if error is None:
            health.STATE.ok(where)
        else:
            health.STATE.failed(where, health.storage_reason(error, durable.folder(self.config)),
                                what="write subscriber counts to")

    def salt(self, day: str) -> bytes:
        """The salt of `day`, made at random by the first worker (of any
        machine on the index) that asks, then the same for all."""
        with self._state().database().write() as tx:
            return subscriber_tables.salt(tx, day, os.urandom(32))

    def add(self, aggregators: Mapping[tuple[str, str, str, str], tuple[int, float]],
            readers: Iterable[tuple[str, str, str]]) -> None:
        """Counts seen by (day, aggregator, feed id, path) → (count, when as a
        POSIX timestamp), and reader hashes (day, path, hash)."""
        with self._state().database().write() as tx:
            subscriber_tables.add(
                tx, [(*key, count, int(seen * 1_000_000))
                     for key, (count, seen) in aggregators.items()], readers)

    def forget_before(self, day: str) -> None:
        """Days before `day`: hashes become a count, and their salts go."""
        with self._state().database().write() as tx:
            subscriber_tables.forget_before(tx, day)

    def days(self, since: str) -> list[DayCount]:
        """Per day (from `since`) and feed path: aggregator counts and direct readers."""
        with self._state().database().read() as tx:
            agg = tx.rows("SELECT day, path, aggregator, SUM(subscribers)"
                          " FROM subscriber_aggregators WHERE day >= ?"
                          " GROUP BY day, path, aggregator", [since])
            fresh = tx.rows("SELECT day, path, COUNT(*) FROM subscriber_readers WHERE day >= ?"
                            " GROUP BY day, path", [since])
            old = tx.rows("SELECT day, path, readers FROM subscriber_reader_days WHERE day >= ?",
                          [since])
        by: dict[tuple[str, str], dict[str, int]] = {}
        readers: dict[tuple[str, str], int] = {}
        for day, path, name, count in agg:
            by.setdefault((day, path), {})[name] = int(count)
        for day, path, count in [*old, *fresh]:
            readers[(day, path)] = readers.get((day, path), 0) + int(count)
        keys = sorted(set(by) | set(readers))
        return [DayCount(day, path, by.get((day, path), {}), readers.get((day, path), 0))
                for day, path in keys]
