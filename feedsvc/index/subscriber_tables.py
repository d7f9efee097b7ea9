"""The tables of subscriber counts (subscriber_store.py reads and writes
them), in the durable database (durable.py), and the statements that write
them: the same for every worker of every machine, and for the import of an
older `subscribers.sqlite3` (sources.py), so that a count is merged one way.

    subscriber_aggregators(day, aggregator, feed_id, path, subscribers, seen_us)
        the latest count an aggregator reported (latest by `seen_us`, whoever wrote it)
    subscriber_readers(day, path, hash)    direct readers of today and yesterday, hashed
    subscriber_reader_days(day, path, readers)
        the distinct count of an older day (its hashes dropped)
    subscriber_salts(day, salt)            today's and yesterday's salt, then deleted

Every write is an insert-if-absent or an upsert, so two workers or two
machines writing the same observation count it once.
"""

from __future__ import annotations

from collections.abc import Iterable

from feedsvc.index.db import Tx


def schema(blob: str, text: str = "TEXT") -> list[str]:
    return [ddl.replace(" TEXT", " " + text) for ddl in [
        "CREATE TABLE IF NOT EXISTS subscriber_aggregators (day TEXT NOT NULL,"
        " aggregator TEXT NOT NULL, feed_id TEXT NOT NULL, path TEXT NOT NULL,"
        " subscribers BIGINT NOT NULL, seen_us BIGINT NOT NULL,"
        " PRIMARY KEY (day, aggregator, feed_id, path))",
        "CREATE TABLE IF NOT EXISTS subscriber_readers (day TEXT NOT NULL, path TEXT NOT NULL,"
        " hash TEXT NOT NULL, PRIMARY KEY (day, path, hash))",
        "CREATE TABLE IF NOT EXISTS subscriber_reader_days (day TEXT NOT NULL,"
        " path TEXT NOT NULL, readers BIGINT NOT NULL, PRIMARY KEY (day, path))",
        f"CREATE TABLE IF NOT EXISTS subscriber_salts (day TEXT PRIMARY KEY, salt {blob} NOT NULL)",
    ]]


AggregatorRow = tuple[str, str, str, str, int, int]   # day, aggregator, feed_id, path, count, seen_us
ReaderRow = tuple[str, str, str]                      # day, path, hash


def salt(tx: Tx, day: str, fresh: bytes) -> bytes:
    """The salt of `day`: `fresh` when nobody made one yet, else the one made
    first (by whichever worker or machine): every machine hashes alike."""
    tx.run("INSERT INTO subscriber_salts (day, salt) VALUES (?, ?) ON CONFLICT (day) DO NOTHING",
           [day, fresh])
    row = tx.one("SELECT salt FROM subscriber_salts WHERE day = ?", [day])
    assert row is not None
    return bytes(row[0])


def add_salts(tx: Tx, salts: Iterable[tuple[str, bytes]]) -> None:
    tx.many("INSERT INTO subscriber_salts (day, salt) VALUES (?, ?) ON CONFLICT (day) DO NOTHING",
            list(salts))


def add(tx: Tx, aggregators: Iterable[AggregatorRow], readers: Iterable[ReaderRow]) -> None:
    """The latest count wins, whoever saw it; a reader's hash is kept once."""
    tx.many("INSERT INTO subscriber_aggregators"
            " (day, aggregator, feed_id, path, subscribers, seen_us) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (day, aggregator, feed_id, path) DO UPDATE SET"
            " subscribers = excluded.subscribers, seen_us = excluded.seen_us"
            " WHERE excluded.seen_us >= subscriber_aggregators.seen_us", list(aggregators))
    tx.many("INSERT INTO subscriber_readers (day, path, hash) VALUES (?, ?, ?)"
            " ON CONFLICT (day, path, hash) DO NOTHING", list(readers))


def forget_before(tx: Tx, day: str) -> None:
    """Days before `day`: their hashes become a count (added to what an
    earlier pass counted, should a late write have come), their salts go."""
    tx.run("INSERT INTO subscriber_reader_days (day, path, readers)"
           " SELECT day, path, COUNT(*) FROM subscriber_readers WHERE day < ? GROUP BY day, path"
           " ON CONFLICT (day, path) DO UPDATE SET"
           " readers = subscriber_reader_days.readers + excluded.readers", [day])
    tx.run("DELETE FROM subscriber_readers WHERE day < ?", [day])
    tx.run("DELETE FROM subscriber_salts WHERE day < ?", [day])


def add_reader_days(tx: Tx, rows: Iterable[tuple[str, str, int]]) -> None:
    """Counts of older days from an imported file: the larger count stays, so
    importing a file twice (two processes at once) counts it once."""
    tx.many("INSERT INTO subscriber_reader_days (day, path, readers) VALUES (?, ?, ?)"
            " ON CONFLICT (day, path) DO UPDATE SET readers = CASE"
            " WHEN excluded.readers > subscriber_reader_days.readers THEN excluded.readers"
            " ELSE subscriber_reader_days.readers END", list(rows))
