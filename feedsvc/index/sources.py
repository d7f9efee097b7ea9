"""Upstream, WebSub and near-duplicate state in the index (durable.py), so
that every instance of a cluster sees the same and a new leader, on another
machine with another state_dir, neither re-collects what an admin deleted
nor pings the hub again for a feed that did not change.

Tables:
- upstream_sources: one row per (category, source URL): the collector's
  SourceState as JSON (validators, seen ids, backoff, last errors, the
  corrections record of what we wrote). The collector keeps it within its
  caps (10,000 ids, 1 MiB) as before: the row is rewritten on every poll.
- websub_announced: feed URL → the ETag the hub was last told about.
- story_signatures: the recent collected posts' MinHash signatures and the
  story each is in (upstream/stories.py), oldest first by `seq`.

Before this, the same state was files in state_dir (`sources/*.json`,
`websub.json`, `stories.json`, and the subscriber counts' `subscribers.sqlite3`,
whose tables are subscriber_tables.py's now). The first process that opens the store for a
state_dir imports them once, merged with what the index already has (the
index wins, but no seen id is lost), and then renames them with an
`.imported` suffix: kept for the admin, never deleted, never read again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feedsvc.clock import utcnow
from feedsvc.config import Config
from feedsvc.index import durable, subscriber_tables
from feedsvc.index.db import Database, IndexUnavailable, Tx

log = logging.getLogger(__name__)
IMPORTED = ".imported"
SUBSCRIBERS_FILE = "subscribers.sqlite3"   # subscriber counts before they moved here


def _now_us() -> int:
    return int(utcnow().timestamp() * 1_000_000)


class StateStore:
    """The durable state of one index (one per process and place: `store_for`).

    The database is opened on first use and again after a failure, so a
    state_dir that was full or read-only works again once it is not; every
    method raises IndexUnavailable while it cannot be read or written."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.where = durable.location(config)
        self._db: Database | None = None
        self._lock = threading.Lock()
        self._imported: set[Path] = set()

    @property
    def place(self) -> Path | str:
        return place(self.config)

    @property
    def name(self) -> str:
        """For /status and health: the file's name or the schema, no path."""
        return (f"{durable.FILE}" if self.where.startswith("sqlite:")
                else f"schema feedsvc_{durable.NAMESPACE}")

    def database(self) -> Database:
        with self._lock:
            if self._db is None:
                try:
                    self._db = durable.open_durable(self.config)
                except OSError as e:
                    raise IndexUnavailable(f"cannot open {self.name}: {e.strerror or e}") from e
            return self._db

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        db = self.database()
        # PostgreSQL: through the one writer connection, not one per thread (the
        # fetch threads are new each pass, and each would open a connection);
        # the state is read once per source and pass, so sharing costs nothing.
        with (db.write() if db.kind == "postgres" else db.read()) as tx:
            yield tx

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self.database().write() as tx:
            yield tx

    # -- upstream sources ----------------------------------------------------------
    def source(self, category: str, url: str) -> dict[str, Any] | None:
        with self._read() as tx:
            row = tx.one("SELECT state FROM upstream_sources WHERE category = ? AND url = ?",
                         [category, url])
        return json.loads(row[0]) if row else None

    def save_source(self, category: str, url: str, state: dict[str, Any]) -> None:
        text = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
        with self._write() as tx:
            tx.run("INSERT INTO upstream_sources (category, url, state, updated_us)"
                   " VALUES (?, ?, ?, ?) ON CONFLICT (category, url) DO UPDATE SET"
                   " state = excluded.state, updated_us = excluded.updated_us",
                   [category, url, text, _now_us()])

    def source_bytes(self, category: str, url: str) -> int:
        """The size of a source's stored state (UTF-8 bytes of its JSON)."""
        with self._read() as tx:
            row = tx.one("SELECT state FROM upstream_sources WHERE category = ? AND url = ?",
                         [category, url])
        return len(row[0].encode("utf-8")) if row else 0

    # -- WebSub ------------------------------------------------------------------------
    def announced(self) -> dict[str, str]:
        with self._read() as tx:
            return {str(t): str(e) for t, e in tx.rows("SELECT topic, etag FROM websub_announced")}

    def save_announced(self, changed: dict[str, str],
                       first_seen: dict[str, str] | None = None) -> None:
        """Store what the hub was told (`changed`), and the ETags first seen
        without a ping (`first_seen`: only where nothing is stored yet)."""
        if not changed and not first_seen:
            return
        now = _now_us()
        with self._write() as tx:
            if first_seen:
                tx.many("INSERT INTO websub_announced (topic, etag, updated_us) VALUES (?, ?, ?)"
                        " ON CONFLICT (topic) DO NOTHING",
                        [(t, e, now) for t, e in sorted(first_seen.items())])
            if not changed:
                return
            tx.many("INSERT INTO websub_announced (topic, etag, updated_us) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic) DO UPDATE SET etag = excluded.etag,"
                    " updated_us = excluded.updated_us",
                    [(t, e, now) for t, e in sorted(changed.items())])

    # -- near-duplicate stories -----------------------------------------------------------
    def story_entries(self, limit: int) -> list[dict[str, str]]:
        """The newest `limit` remembered signatures, oldest first."""
        with self._read() as tx:
            rows = tx.rows("SELECT guid, story, source, hashes FROM story_signatures"
                           " ORDER BY seq DESC LIMIT ?", [limit])
        return [dict(zip(("guid", "story", "source", "hashes"), r, strict=True))
                for r in reversed(rows)]

    def add_story_entries(self, entries: list[dict[str, str]], keep: int) -> None:
        """Remember new signatures; forget all but the newest `keep`."""
        if not entries:
            return
        with self._write() as tx:
            row = tx.one("SELECT max(seq) FROM story_signatures")
            start = int(row[0]) + 1 if row and row[0] is not None else 1
            tx.many("INSERT INTO story_signatures (seq, guid, story, source, hashes)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(start + i, e["guid"], e["story"], e["source"], e["hashes"])
                     for i, e in enumerate(entries)])
            tx.run("DELETE FROM story_signatures WHERE seq <= ?", [start + len(entries) - 1 - keep])

    # -- the files of older versions -------------------------------------------------------
    def import_files(self, state_dir: Path) -> list[str]:
        """Import a state_dir's state files once (then renamed `*.imported`);
        what was imported. Safe to run in several processes at once: the merge
        loses nothing and a file renamed by another is skipped."""
        key = state_dir.absolute()
        if key in self._imported:
            return []
        done: list[str] = []
        folder = state_dir / "sources"
        if folder.is_dir():
            files = sorted(folder.glob("*.json"))
            for path in files:
                self._import_source(path)
            if files:
                done.append(f"{len(files)} source state file(s) from {folder.name}/")
            _set_aside(folder)
        websub = state_dir / "websub.json"
        if websub.is_file():
            self._import_websub(websub)
            done.append(websub.name)
            _set_aside(websub)
        stories = state_dir / "stories.json"
        if stories.is_file():
            self._import_stories(stories)
            done.append(stories.name)
            _set_aside(stories)
        subscribers = state_dir / SUBSCRIBERS_FILE
        if subscribers.is_file() and self._import_subscribers(subscribers):
            done.append(subscribers.name)
            _set_aside(subscribers, companions=("-wal", "-shm"))
        if done:
            log.warning("imported %s from %s into the index (%s); the files are kept with the "
                        "suffix %s and no longer read", ", ".join(done), state_dir, self.name,
                        IMPORTED)
        self._imported.add(key)
        return done

    def _import_source(self, path: Path) -> None:
        data = _json(path)
        if not isinstance(data, dict) or not isinstance(data.get("url"), str) or \
                not isinstance(data.get("category"), str):
            if path.exists():
                log.warning("not importing %s: not a source state", path)
            return
        data.pop("format", None)
        category, url = data["category"], data["url"]
        with self._write() as tx:
            row = tx.one("SELECT state FROM upstream_sources WHERE category = ? AND url = ?",
                         [category, url])
            if row is not None:
                # The index's state is the newer (another instance wrote it): keep
                # it, with every id the file remembers that it does not.
                have = json.loads(row[0])
                seen = list(have.get("seen") or [])
                known = set(seen)
                have["seen"] = [g for g in data.get("seen") or [] if g not in known] + seen
                have["written"] = {**(data.get("written") or {}), **(have.get("written") or {})}
                data = have
            tx.run("INSERT INTO upstream_sources (category, url, state, updated_us)"
                   " VALUES (?, ?, ?, ?) ON CONFLICT (category, url) DO UPDATE SET"
                   " state = excluded.state, updated_us = excluded.updated_us",
                   [category, url, json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                    _now_us()])

    def _import_websub(self, path: Path) -> None:
        data = _json(path)
        feeds = data.get("announced", {}) if isinstance(data, dict) else {}
        if not isinstance(feeds, dict):
            return
        have = self.announced()
        self.save_announced({str(k): str(v) for k, v in feeds.items() if str(k) not in have})

    def _import_stories(self, path: Path) -> None:
        data = _json(path)
        entries = data.get("entries", []) if isinstance(data, dict) else []
        # A file of another signature scheme is not imported (as stories.py did).
        if not isinstance(entries, list) or data.get("scheme") != "affine32":
            return
        with self._read() as tx:
            have = {r[0] for r in tx.rows("SELECT guid FROM story_signatures")}
        fresh = [{k: str(e[k]) for k in ("guid", "story", "source", "hashes")}
                 for e in entries if isinstance(e, dict)
                 and all(k in e for k in ("guid", "story", "source", "hashes"))
                 and e["guid"] not in have]
        self.add_story_entries(fresh, keep=2**62)

    def _import_subscribers(self, path: Path) -> bool:
        """The counts of the subscriber file of older versions, merged as every
        worker merges its own (subscriber_tables.py): importing it twice, or
        beside counts the index already has, counts nothing twice. False (and
        the file left where it is, to be tried again at the next start) when
        it cannot be read."""
        try:
            rows = _subscriber_rows(path)
        except sqlite3.Error as e:
            log.error("not importing the subscriber counts of %s (left in place, tried again at "
                      "the next start): %s", path, e)
            return False
        with self._write() as tx:
            subscriber_tables.add_salts(tx, rows["salts"])
            subscriber_tables.add(tx, rows["aggregators"], rows["readers"])
            subscriber_tables.add_reader_days(tx, rows["reader_days"])
        return True

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("not importing unreadable %s: %s", path, e)
        return None


def _subscriber_rows(path: Path) -> dict[str, list[Any]]:
    """Every row of an older feedsvc's `subscribers.sqlite3` (its tables
    aggregators, readers, reader_days, salts), as subscriber_tables writes them."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

        def rows(table: str, columns: str) -> list[tuple[Any, ...]]:
            return conn.execute(f"SELECT {columns} FROM {table}").fetchall() \
                if table in have else []

        return {
            "aggregators": [(str(d), str(a), str(f), str(p), int(n), int(float(seen) * 1e6))
                            for d, a, f, p, n, seen in rows(
                                "aggregators", "day, aggregator, feed_id, path, subscribers, seen")],
            "readers": [(str(d), str(p), str(h))
                        for d, p, h in rows("readers", "day, path, hash")],
            "reader_days": [(str(d), str(p), int(n))
                            for d, p, n in rows("reader_days", "day, path, readers")],
            "salts": [(str(d), bytes(s)) for d, s in rows("salts", "day, salt")],
        }
    finally:
        # The last connection to close folds its write-ahead log into the file.
        conn.close()


def _set_aside(path: Path, companions: tuple[str, ...] = ()) -> None:
    """Rename an imported file or folder (never delete it), and the files
    beside it named after it (`companions`: SQLite's `-wal`, `-shm`); a name
    already taken gets a date. Another process may have renamed it first."""
    target = path.with_name(path.name + IMPORTED)
    if target.exists():
        target = path.with_name(f"{path.name}{IMPORTED}-{utcnow():%Y%m%dT%H%M%S%f}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return
    except OSError as e:
        # A read-only state_dir: imported again next time (merging loses nothing).
        log.warning("imported %s but cannot rename it: %s", path, e.strerror or e)
        return
    for suffix in companions:
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{target}{suffix}")


def place(config: Config) -> Path | str:
    """What health.STATE names for a failed state write: the file in state_dir
    (SQLite) or the index's schema (PostgreSQL)."""
    if durable.location(config).startswith("sqlite:"):
        return config.state_dir / durable.FILE
    return f"index schema feedsvc_{durable.NAMESPACE}"


_STORES: dict[tuple[int, str], StateStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(config: Config) -> StateStore:
    """The process's store for this config's index, with state_dir's old
    files imported (IndexUnavailable when the index cannot be written now:
    the import is tried again on the next call)."""
    key = (os.getpid(), durable.location(config))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = StateStore(config)
    store.import_files(config.state_dir)
    return store

