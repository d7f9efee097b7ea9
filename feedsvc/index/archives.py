"""Archive numbers (RFC 5005 section 4): which archive document of a feed
each post is in, fixed when the post is first indexed and kept in the index.

Every feed (a category 'c', a tag 't', the site-wide feed '*') numbers its
posts 1, 2, 3 … in the order they arrived (`archive_slots.seq`); archive N
of a feed holds the slots (N−1)·size+1 … N·size. A new post takes the next
number, so it lands in the newest ("open") archive whatever its date: a
back-dated post never renumbers history. A post keeps its number by id
(guid) for good: edited, it stays where it is; deleted, it leaves a hole
(`present = 0`) that is never refilled, and it gets its old number back if
it returns. A first indexing numbers the posts it found oldest first (by
date, ties by id), so archive 1 holds the oldest.

These tables are not derived from posts_dir alone (arrival order is
history): they survive a rebuild of the posts tables. When a new index is
made (a changed INDEX_FORMAT or post rule means a new SQLite file or
PostgreSQL schema), `adopt()` copies the numbers of the previous one first.
`check()` finds numbers that cannot be ours (tampered with, or cut short),
numbers those feeds again and says so.

`stamp` is the index generation at which a slot last changed: with the
slot's date it tells the incremental export which archive documents may
have changed without reading a single post.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)
ALL = ("*", "")     # the site-wide feed's (kind, term)
COPY_BATCH = 5000

DDL = [
    "CREATE TABLE IF NOT EXISTS archive_slots (kind TEXT NOT NULL, term TEXT NOT NULL,"
    " guid TEXT NOT NULL, seq BIGINT, present INTEGER NOT NULL, date_us BIGINT NOT NULL,"
    " stamp BIGINT NOT NULL, rel TEXT NOT NULL, PRIMARY KEY (kind, term, guid))",
    "CREATE UNIQUE INDEX IF NOT EXISTS archive_slots_seq ON archive_slots (kind, term, seq)",
    # The posts not numbered yet (a first indexing numbers them at its end, by date).
    "CREATE INDEX IF NOT EXISTS archive_slots_pending ON archive_slots (kind, term, date_us, guid)"
    " WHERE seq IS NULL",
    "CREATE TABLE IF NOT EXISTS archive_feeds (kind TEXT NOT NULL, term TEXT NOT NULL,"
    " next_seq BIGINT NOT NULL, PRIMARY KEY (kind, term))",
]


class _Tx(Protocol):   # db.Tx (not imported: db.py imports this module for DDL)
    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...
    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None: ...
    def run(self, sql: str, params: Any = ()) -> None: ...
    def many(self, sql: str, seq: Iterable[Any]) -> None: ...
    def iterate(self, sql: str, params: Any = ()) -> Iterator[tuple[Any, ...]]: ...


# -- writing (inside the index writer's transaction) ------------------------------------
def show(tx: _Tx, feeds: Iterable[tuple[str, str]], guid: str, rel: str, date_us: int,
         stamp: int) -> None:
    """The post `guid` (file `rel`) is now shown in `feeds`: it keeps the number
    it has there, or waits for one (number())."""
    tx.many("INSERT INTO archive_slots (kind, term, guid, seq, present, date_us, stamp, rel)"
            " VALUES (?, ?, ?, NULL, 1, ?, ?, ?) ON CONFLICT (kind, term, guid) DO UPDATE SET"
            " present = 1, date_us = excluded.date_us, stamp = excluded.stamp, rel = excluded.rel",
            [(k, t, guid, date_us, stamp, rel) for k, t in feeds])


def hide(tx: _Tx, feeds: Iterable[tuple[str, str]], guid: str, stamp: int) -> None:
    """The post `guid` left `feeds`: its number stays taken (a hole)."""
    tx.many("UPDATE archive_slots SET present = 0, stamp = ? WHERE kind = ? AND term = ?"
            " AND guid = ?", [(stamp, k, t, guid) for k, t in feeds])


def number(tx: _Tx) -> int:
    """Give every shown post that has no number yet the next ones of its feed,
    oldest first (ties by id); return how many were numbered. Set-based, a feed
    at a time in runs of dates (_runs): a first indexing numbers millions."""
    pending = tx.rows("SELECT kind, term, count(*) FROM archive_slots WHERE seq IS NULL"
                      " AND present = 1 GROUP BY kind, term ORDER BY kind, term")
    waiting = "FROM archive_slots WHERE kind = ? AND term = ? AND seq IS NULL AND present = 1"
    for kind, term, _ in pending:
        for low, high in _runs(tx, f"SELECT date_us {waiting}", [kind, term]):
            tx.run("UPDATE archive_slots SET seq = p.seq FROM (SELECT guid, ? - 1 + row_number()"
                   f" OVER (ORDER BY date_us, guid) AS seq {waiting} AND date_us >= ?"
                   " AND date_us < ?) AS p WHERE archive_slots.kind = ? AND archive_slots.term = ?"
                   " AND archive_slots.guid = p.guid",
                   [next_seq(tx, kind, term), kind, term, low, high, kind, term])
            row = tx.one("SELECT max(seq) FROM archive_slots WHERE kind = ? AND term = ?",
                         [kind, term])
            tx.run("INSERT INTO archive_feeds (kind, term, next_seq) VALUES (?, ?, ?)"
                   " ON CONFLICT (kind, term) DO UPDATE SET next_seq = excluded.next_seq",
                   [kind, term, int(row[0]) + 1 if row and row[0] is not None else 1])
    return sum(int(n) for _, _, n in pending)


def derive(tx: _Tx, stamp: int) -> None:
    """Make every feed's slots from what the feeds hold now: the category and
    tag feeds' terms rows, the site-wide feed's lead posts. A first indexing
    writes no slots as it goes (per post, three more B-tree inserts in no
    order were a third of its single writer's time); it calls this at its end,
    before number(). A number adopted from a previous index is kept."""
    # Rows this index shows already can only come from a first indexing that an
    # older feedsvc (slots as it went) left unfinished: what it showed is decided again.
    tx.run("UPDATE archive_slots SET present = 0 WHERE present = 1")
    upsert = ("INSERT INTO archive_slots (kind, term, guid, seq, present, date_us, stamp, rel)"
              " SELECT {kind}, {term}, guid, CAST(NULL AS BIGINT), 1, date_us, ?, rel"
              " FROM {source} AND date_us >= ? AND date_us < ? ORDER BY guid"
              " ON CONFLICT (kind, term, guid) DO UPDATE SET present = 1,"
              " date_us = excluded.date_us, stamp = excluded.stamp, rel = excluded.rel")
    feeds = tx.rows("SELECT kind, term FROM counts WHERE kind IN ('c', 't') AND n > 0"
                    " ORDER BY kind, term")
    source = "terms WHERE kind = ? AND term = ?"
    for kind, term in feeds:
        for low, high in _runs(tx, f"SELECT date_us FROM {source}", [kind, term]):
            tx.run(upsert.format(kind="kind", term="term", source=source),
                   [stamp, kind, term, low, high])
    source = "posts WHERE lead = 1"
    for low, high in _runs(tx, f"SELECT date_us FROM {source}", []):
        tx.run(upsert.format(kind="'*'", term="''", source=source), [stamp, low, high])


RUN_ROWS = 50_000      # rows per statement of number() and derive()
_FIRST, _LAST = -(2**63), 2**63 - 1


def _runs(tx: _Tx, dates: str, params: list[Any]) -> Iterator[tuple[int, int]]:
    """Half-open date ranges [low, high) that cover every row of `dates` (a
    query of date_us, in an index's order), each of about RUN_ROWS rows (more
    only when that many share one date): every statement stays well inside
    PostgreSQL's write bound (pg.py) whatever the size of a feed."""
    low = _FIRST
    while True:
        row = tx.one(f"{dates} AND date_us >= ? ORDER BY date_us LIMIT 1 OFFSET ?",
                     [*params, low, RUN_ROWS])
        if row is None:
            yield low, _LAST
            return
        high = max(int(row[0]), low + 1)
        yield low, high
        low = high


def check(tx: _Tx) -> list[str]:
    """Feeds whose numbers cannot be ours — a number below 1 or not below the
    feed's next one, a number twice, a feed without its counter — are numbered
    again from scratch (their archives change: nothing else can be trusted);
    return a line per feed repaired."""
    rows = tx.rows(
        "SELECT s.kind, s.term, count(*), count(DISTINCT s.seq), min(s.seq), max(s.seq),"
        " f.next_seq FROM archive_slots s LEFT JOIN archive_feeds f"
        " ON f.kind = s.kind AND f.term = s.term WHERE s.seq IS NOT NULL"
        " GROUP BY s.kind, s.term, f.next_seq")
    bad: list[tuple[str, str, str]] = []
    for kind, term, n, distinct, low, high, next_seq in rows:
        if next_seq is None:
            why = "no counter"
        elif not all(isinstance(v, int) for v in (low, high, next_seq)):
            why = "numbers that are not whole numbers"
        elif n != distinct:
            why = "a number used twice"
        elif low < 1 or high >= next_seq:
            why = f"numbers {low}…{high} outside 1…{next_seq - 1}"
        else:
            continue
        bad.append((kind, term, why))
    lines = []
    for kind, term, why in bad:
        tx.run("UPDATE archive_slots SET seq = NULL WHERE kind = ? AND term = ?", [kind, term])
        tx.run("DELETE FROM archive_feeds WHERE kind = ? AND term = ?", [kind, term])
        lines.append(f"archive numbers of {feed_name(kind, term)} were damaged ({why}):"
                     " numbered again by date")
    for line in lines:
        log.error("%s", line)
    return lines


def feed_name(kind: str, term: str) -> str:
    return {"c": f"category {term}", "t": f"tag {term}"}.get(kind, "the site-wide feed")


# -- a new index takes the numbers of the previous one --------------------------------------
def adopt(db: Any) -> str | None:
    """Copy the archive numbers of the newest other index beside this one (an
    earlier INDEX_FORMAT or post rule) into this new, empty one; return where
    they came from (None: nothing to adopt). The posts themselves are read again."""
    with db.read() as tx:
        if tx.one("SELECT 1 FROM archive_feeds LIMIT 1") is not None:
            return None
    if db.kind == "sqlite":
        return _adopt_sqlite(db)
    if db.kind == "postgres":
        return _adopt_postgres(db)
    return None


def _adopt_sqlite(db: Any) -> str | None:
    here = Path(db.path)
    others = [p for p in here.parent.glob("index-*.sqlite3") if p != here and p.is_file()]
    for old in sorted(others, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            src = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
            try:
                feeds = src.execute("SELECT kind, term, next_seq FROM archive_feeds").fetchall()
                if not feeds:
                    continue
                slots = src.execute("SELECT kind, term, guid, seq FROM archive_slots"
                                    " WHERE seq IS NOT NULL")
                _copy(db, feeds, slots)
            finally:
                src.close()
        except sqlite3.Error as e:
            if "no such table" in str(e):
                # An index from before archives: nothing to take, nothing wrong.
                log.info("the previous index %s has no archive numbers", old.name)
            else:
                log.warning("cannot take archive numbers from %s: %s", old.name, e)
            continue
        log.info("archive numbers taken from the previous index %s", old.name)
        return old.name
    return None


def _adopt_postgres(db: Any) -> str | None:
    with db.read() as tx:
        schemas = [r[0] for r in tx.rows(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'archive_feeds'"
            " AND table_schema LIKE ? AND table_schema <> current_schema()", ["feedsvc\\_%"])]
        # The one with the most history numbered (schemas carry no date of their own).
        best: tuple[int, str] | None = None
        for name in schemas:
            row = tx.one(f'SELECT coalesce(sum(next_seq), 0) FROM "{name}".archive_feeds')  # noqa: S608
            total = int(row[0]) if row else 0
            if total and (best is None or total > best[0]):
                best = (total, name)
    if best is None:
        return None
    name = best[1]
    with db.read() as tx:
        feeds = tx.rows(f'SELECT kind, term, next_seq FROM "{name}".archive_feeds')  # noqa: S608
        slots = tx.rows(f'SELECT kind, term, guid, seq FROM "{name}".archive_slots'  # noqa: S608
                        " WHERE seq IS NOT NULL")
    _copy(db, feeds, iter(slots))
    log.info("archive numbers taken from the previous index schema %s", name)
    return name


def _copy(db: Any, feeds: list[tuple[Any, ...]], slots: Iterator[tuple[Any, ...]]) -> None:
    with db.write() as tx:
        if tx.one("SELECT 1 FROM archive_feeds LIMIT 1") is not None:
            return
        tx.many("INSERT INTO archive_feeds (kind, term, next_seq) VALUES (?, ?, ?)", feeds)
        batch: list[tuple[Any, ...]] = []
        for kind, term, guid, seq in slots:
            # Not shown until this index reads the post again (present = 0).
            batch.append((kind, term, guid, seq))
            if len(batch) >= COPY_BATCH:
                _insert_adopted(tx, batch)
        _insert_adopted(tx, batch)


def _insert_adopted(tx: _Tx, batch: list[tuple[Any, ...]]) -> None:
    tx.many("INSERT INTO archive_slots (kind, term, guid, seq, present, date_us, stamp, rel)"
            " VALUES (?, ?, ?, ?, 0, 0, 0, '') ON CONFLICT (kind, term, guid) DO NOTHING", batch)
    batch.clear()


# -- reading ------------------------------------------------------------------------------
def next_seq(tx: _Tx, kind: str, term: str) -> int:
    row = tx.one("SELECT next_seq FROM archive_feeds WHERE kind = ? AND term = ?", [kind, term])
    return int(row[0]) if row else 1


def records(tx: _Tx, kind: str, term: str, first: int, last: int, now_us: int) -> list[Any]:
    """The records of the visible posts numbered first…last, newest first (ties by id)."""
    return [r[0] for r in tx.rows(
        "SELECT p.record FROM archive_slots a JOIN posts p ON p.rel = a.rel"
        " WHERE a.kind = ? AND a.term = ? AND a.seq >= ? AND a.seq <= ? AND a.present = 1"
        " AND a.date_us <= ? ORDER BY a.date_us DESC, a.guid",
        [kind, term, first, last, now_us])]


def fingerprints(tx: _Tx, kind: str, term: str, size: int, now_us: int) -> tuple[int, list[str]]:
    """For one feed: its next number, and per archive of `size` numbers (1 the
    oldest) a digest of its slots' (number, stamp, visible) — visible = shown
    and its date has come — that changes whenever the archive's document may.
    The export compares these to see which archives to render, without
    reading a post. One feed's slots at a time, in number order, folded as
    they come: memory holds a digest per archive of this feed, never the
    numbers of every feed."""
    taken = next_seq(tx, kind, term)
    out: list[str] = []
    current, bucket = 0, hashlib.sha256()
    for seq, stamp, present, date_us in tx.iterate(
            "SELECT seq, stamp, present, date_us FROM archive_slots WHERE kind = ? AND term = ?"
            " AND seq >= 1 AND seq < ? ORDER BY seq", [kind, term, taken]):
        number = (int(seq) - 1) // size + 1
        while current < number:
            if current:
                out.append(bucket.hexdigest())
            current, bucket = current + 1, hashlib.sha256()
        visible = int(bool(present) and date_us <= now_us)
        bucket.update(f"{int(seq)},{int(stamp)},{visible};".encode())
    count = -(-(taken - 1) // size)
    while current < count:
        if current:
            out.append(bucket.hexdigest())
        current, bucket = current + 1, hashlib.sha256()
    if current:
        out.append(bucket.hexdigest())
    return taken, out
