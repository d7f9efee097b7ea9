"""The database under the index: SQLite in state_dir (default) or PostgreSQL
(pg.py), behind one small interface so the index writes its SQL once.

SQL is written with `?` placeholders and the portable subset of both
(ON CONFLICT upserts, no dialect functions). Reads run in a transaction, so
everything one `read()` sees is one committed version; writes take the
database's write lock for the whole transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from feedsvc import health
from feedsvc.errors import FeedsvcError
from feedsvc.index import archives

log = logging.getLogger(__name__)
Params = Sequence[Any]
QUICK_CHECK_BYTES = 64 * 2**20   # files up to this size get every page checked at open
WRITER_CACHE_KB = 16 * 1024      # the page cache of the writing connection (readers: 1 MB)


class IndexUnavailable(FeedsvcError):
    """The index database cannot be read or written right now (locked,
    unreachable, corrupt, disk full); the message says why. `corrupt`: it
    will not get better by waiting, only by indexing again."""

    def __init__(self, message: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class Tx(Protocol):
    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]: ...
    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None: ...
    def run(self, sql: str, params: Params = ()) -> None: ...
    def many(self, sql: str, seq: Iterable[Params]) -> None: ...
    def iterate(self, sql: str, params: Params = ()) -> Iterator[tuple[Any, ...]]: ...


class Database(Protocol):
    kind: str
    blob: str                   # the column type for bytes
    binary_order: str           # appended to ORDER BY for byte order of text

    @property
    def damage(self) -> str | None:
        """Why a read or write of this process found the database spoilt (None:
        it did not, or it was rebuilt since); Index.scan rebuilds it."""

    def read(self) -> Any: ...   # a context manager yielding a Tx
    def write(self) -> Any: ...
    def no_retry(self) -> AbstractContextManager[None]: ...   # (ReentrantReads.no_retry)
    def rebuild(self) -> None: ...   # start again from an empty database (after `corrupt`)
    def describe(self) -> dict[str, object]: ...
    def close(self) -> None: ...


def schema(blob: str, text: str = "TEXT") -> list[str]:
    """The tables (the same for both databases but for the bytes type).

    posts: one row per post file that is a post; `shown` marks the one post
    of each id that feeds carry (the lexically first published file).
    `story` names the story a post is in (index.story_key); among the shown
    copies of a story, `lead` marks the one the site-wide feed carries and
    `fronts` (a JSON list) the tags whose feeds carry this copy (index._Writer
    ._restory: the earliest-dated, ties by config order then path).
    terms: (kind, term) → the posts in it, newest first, ties by id; kind 'c'
    category (every shown post), 't' tag (the copies whose `fronts` name it).
    counts: how many posts each (kind, term) has, future-dated ones included,
    as terms; kind 's' is the set of a post's categories (the site-wide
    feed's `lead` posts), '*' all of them, '#' every shown post.
    kv: room for what other parts keep in the index (archive numbers,
    subscriber counts, upstream and WebSub state), by scope and key.
    """
    return [ddl.replace(" TEXT", " " + text) for ddl in [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS files (rel TEXT PRIMARY KEY, mtime_ns BIGINT NOT NULL,"
        " size BIGINT NOT NULL, problem TEXT)",
        # The few files with a problem, without a scan of every file (/status, the watcher).
        "CREATE INDEX IF NOT EXISTS files_problems ON files (rel) WHERE problem IS NOT NULL",
        f"CREATE TABLE IF NOT EXISTS posts (rel TEXT PRIMARY KEY, guid TEXT NOT NULL,"
        f" date_us BIGINT NOT NULL, updated_us BIGINT NOT NULL, modified_us BIGINT NOT NULL,"
        f" published INTEGER NOT NULL, shown INTEGER NOT NULL, cats TEXT NOT NULL,"
        f" source_guid TEXT, story TEXT NOT NULL, lead INTEGER NOT NULL, fronts TEXT NOT NULL,"
        f" record {blob} NOT NULL, body {blob} NOT NULL)",
        # (guid, shown): "the shown post of this id" is an equality on both, so the
        # planner never prefers posts_shown, which would scan every shown post for
        # each insert (a first indexing quadratic in the posts: 17,000 posts in 2 min).
        "CREATE INDEX IF NOT EXISTS posts_by_guid ON posts (guid, shown, rel)",
        "CREATE INDEX IF NOT EXISTS posts_shown ON posts (shown, date_us DESC, guid)",
        # The site-wide feed's order, and a story's copies (a few rows per change).
        "CREATE INDEX IF NOT EXISTS posts_lead ON posts (lead, date_us DESC, guid)",
        "CREATE INDEX IF NOT EXISTS posts_by_story ON posts (story, shown, date_us)",
        "CREATE INDEX IF NOT EXISTS posts_by_date ON posts (published, date_us)",
        "CREATE INDEX IF NOT EXISTS posts_by_updated ON posts (published, updated_us)",
        "CREATE INDEX IF NOT EXISTS posts_by_modified ON posts (published, modified_us)",
        "CREATE INDEX IF NOT EXISTS posts_by_source ON posts (source_guid)"
        " WHERE source_guid IS NOT NULL",
        "CREATE TABLE IF NOT EXISTS terms (kind TEXT NOT NULL, term TEXT NOT NULL,"
        " date_us BIGINT NOT NULL, guid TEXT NOT NULL, rel TEXT NOT NULL)",
        # Scanned forward, this is the feed order: newest first, ties by ascending id.
        "CREATE UNIQUE INDEX IF NOT EXISTS terms_newest ON terms (kind, term, date_us DESC, guid)",
        "CREATE TABLE IF NOT EXISTS counts (kind TEXT NOT NULL, term TEXT NOT NULL,"
        " n BIGINT NOT NULL, PRIMARY KEY (kind, term))",
        "CREATE TABLE IF NOT EXISTS kv (scope TEXT NOT NULL, key TEXT NOT NULL,"
        " value TEXT NOT NULL, updated_us BIGINT NOT NULL, PRIMARY KEY (scope, key))",
        *archives.DDL,
    ]]


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def run(self, sql: str, params: Params = ()) -> None:
        self.conn.execute(sql, params)

    def many(self, sql: str, seq: Iterable[Params]) -> None:
        self.conn.executemany(sql, seq)

    def iterate(self, sql: str, params: Params = ()) -> Iterator[tuple[Any, ...]]:
        return iter(self.conn.execute(sql, params))


class ReentrantReads:
    """What both databases share: a connection per thread for reads, one read
    inside another on the same thread being the outer one (a view that asks a
    helper which reads again sees the same version, not a newer one), and one
    writer connection per process behind a lock."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writer: Any = None
        self._writer_pid = 0

    def _outer_read(self) -> AbstractContextManager[Tx]:
        """A read transaction of this thread's own, errors as IndexUnavailable."""
        raise NotImplementedError

    @contextmanager
    def read(self) -> Iterator[Tx]:
        local = self._local
        if getattr(local, "depth", 0):
            local.depth += 1
            try:
                yield local.tx
            finally:
                local.depth -= 1
            return
        local.depth = 1
        try:
            with self._outer_read() as tx:
                local.tx = tx
                yield tx
        finally:
            local.depth, local.tx = 0, None

    @contextmanager
    def no_retry(self) -> Iterator[None]:
        """Reads inside fail at once while the database is known to be away,
        never the one that tries whether it is back (pg.py READ_RETRY): an
        event loop must not wait for that. Nothing to do for SQLite."""
        yield

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


class SqliteDatabase(ReentrantReads):
    """One file in WAL mode: any number of readers (a connection per thread),
    one writer at a time (SQLite's own lock; `busy` seconds of waiting for it).

    A file that is not a database (truncated, overwritten, corrupt) is moved
    aside as `*.corrupt` and a new one made: the index can always be rebuilt
    from posts_dir, a misread one cannot be trusted."""

    kind = "sqlite"
    blob = "BLOB"
    binary_order = ""           # SQLite compares text as bytes already

    def __init__(self, path: Path, *, busy: float = 5.0, read_busy: float = 1.0,
                 tables: Callable[..., list[str]] | None = None) -> None:
        self.path, self.busy, self.read_busy = Path(path), busy, read_busy
        # Another set of tables than the posts' (index/durable.py: state that
        # outlives a rebuild of the posts lives in a database of its own).
        self.tables = tables or schema
        self.private = False
        self._damage: tuple[str, int | None] | None = None   # (why, the file's inode)
        super().__init__()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open_checked()

    def _open_checked(self) -> None:
        for need in (self.path.parent, self.path):
            # WAL writes -wal and -shm files beside the database, even to read it.
            if need.exists() and not os.access(need, os.W_OK):
                raise IndexUnavailable(f"cannot write {need.name}: read-only for this user")
        try:
            if self._truncated():
                raise sqlite3.DatabaseError("the file is shorter than its header says")
            conn = self._connect(self.busy)
            conn.execute("PRAGMA journal_mode=WAL")
            if self.path.stat().st_size <= QUICK_CHECK_BYTES:
                row = conn.execute("PRAGMA quick_check").fetchone()
                if row and row[0] != "ok":
                    raise sqlite3.DatabaseError(str(row[0]))
            with self._tx(conn, "BEGIN IMMEDIATE") as tx:
                for ddl in self.tables(self.blob):
                    tx.run(ddl)
            conn.close()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise IndexUnavailable(f"index database {self.path.name} is locked: {e}") from e
            if isinstance(e, sqlite3.OperationalError):
                raise IndexUnavailable(f"cannot open index database {self.path.name}: {e}") from e
            log.error("index database %s is unreadable (%s): indexing again", self.path, e)
            self._move_aside()
            self._open_checked()

    def _truncated(self) -> bool:
        """A file cut short (a copy that stopped, a full disk): its header counts
        more pages than it has. Cheap, unlike a check of every page."""
        try:
            with open(self.path, "rb") as fh:
                header = fh.read(100)
        except FileNotFoundError:
            return False
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            return len(header) > 0
        if Path(str(self.path) + "-wal").exists():
            return False   # the newest pages may be in the log
        page = int.from_bytes(header[16:18], "big") or 1
        page = 65536 if page == 1 else page
        return int.from_bytes(header[28:32], "big") * page > self.path.stat().st_size

    def _move_aside(self) -> None:
        aside = self.path.with_name(self.path.name + ".corrupt")
        log.error("moved the unreadable index database to %s", aside.name)
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, str(aside) + suffix)

    def rebuild(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._move_aside()
            self._open_checked()
            self._damage = None

    def _connect(self, busy: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=busy)
        conn.execute("PRAGMA synchronous=NORMAL")
        # Pages a worker keeps per connection; the OS page cache holds the rest.
        conn.execute("PRAGMA cache_size=-1024")
        conn.execute("PRAGMA temp_store=FILE")
        return conn

    @contextmanager
    def _tx(self, conn: sqlite3.Connection, begin: str) -> Iterator[_SqliteTx]:
        conn.execute(begin)
        try:
            yield _SqliteTx(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A file replaced under us (rebuilt after corruption) is opened again.
        ino = os.stat(self.path).st_ino
        if conn is None or getattr(self._local, "key", None) != (os.getpid(), ino):
            if conn is not None:
                conn.close()
            conn = self._connect(self.read_busy)
            self._local.conn, self._local.key = conn, (os.getpid(), ino)
        return conn

    @contextmanager
    def _outer_read(self) -> Iterator[Tx]:
        try:
            with self._tx(self._reader(), "BEGIN") as tx:
                yield tx
        except (sqlite3.Error, OSError) as e:
            self._local.conn = None   # a connection that failed is not trusted again
            raise self._failed(e) from e

    def _failed(self, e: Exception) -> IndexUnavailable:
        """The error for `e`. A spoilt file is remembered (`damage`): the pages
        other connections hold may hide it from their reads, and the next write,
        which would find it, may be far off."""
        error = _unavailable(self.path, e)
        if _spoilt(e) and self.damage is None:
            self._damage = (str(error), self._inode())
        return error

    def _inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino
        except OSError:
            return None

    @property
    def damage(self) -> str | None:
        # Another process (the leader) may have rebuilt it: a new file.
        if self._damage is not None and self._inode() != self._damage[1]:
            self._damage = None
        return None if self._damage is None else self._damage[0]

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write_lock:
            try:
                if self._writer is None or self._writer_pid != os.getpid():
                    self._writer, self._writer_pid = self._connect(self.busy), os.getpid()
                    # The one writer walks every index of the tables on each
                    # insert: its cache keeps their inner pages (a first indexing
                    # at a million posts misses them in 1 MB), and a checkpoint
                    # (a sync of the file) every 40 MB of log, not every 4 MB.
                    self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KB}")
                    self._writer.execute("PRAGMA wal_autocheckpoint=10000")
                with self._tx(self._writer, "BEGIN IMMEDIATE") as tx:
                    yield tx
            except (sqlite3.Error, OSError) as e:
                if self._writer is not None:
                    self._writer.close()
                self._writer = None
                raise self._failed(e) from e

    def describe(self) -> dict[str, object]:
        return {"type": self.kind, "file": self.path.name}


def _unavailable(path: Path, e: Exception) -> IndexUnavailable:
    corrupt = isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError)
    if isinstance(e, sqlite3.OperationalError) and "malformed" in str(e):
        corrupt = True
    # A full disk in the words every writer of state uses (health.storage_reason),
    # SQLite's own beside them: "No space left on device (database or disk is full)".
    reason = health.storage_reason(e)
    why = str(e) if reason == str(e) else f"{reason} ({e})"
    return IndexUnavailable(f"index database {path.name}: {why}", corrupt=corrupt)


def _spoilt(e: Exception) -> bool:
    """SQLite says the file itself is bad (SQLITE_CORRUPT, SQLITE_NOTADB, their
    extended codes), not that a statement failed (a constraint, a closed
    connection): only that is worth a rebuild by itself."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def retrying(fn: Any, attempts: int = 3, pause: float = 0.05) -> Any:
    """fn() again after a short pause when the database was busy for a moment."""
    for i in range(attempts):
        try:
            return fn()
        except IndexUnavailable:
            if i == attempts - 1:
                raise
            time.sleep(pause * (i + 1))
    return None
