"""The index in PostgreSQL (psycopg 3), for several instances on one index:
the same tables as SQLite (db.schema) in a schema of their own per set of
post reading rules, and the cluster's leader elected by an advisory lock.

Reads run in REPEATABLE READ transactions (one snapshot, as SQLite's WAL
gives); every thread has its own connection, opened again after a failure,
so an outage costs the requests made during it (503, never a 500) and
nothing after it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from feedsvc import health
from feedsvc.index.db import IndexUnavailable, Params, ReentrantReads, Tx, schema

# Elections log where leader.Leader's do: one logger to quiet (`feedsvc collect`) or follow.
leader_log = logging.getLogger("feedsvc.leader")
CONNECT_TIMEOUT = 3
LEADER_KEY = int.from_bytes(hashlib.sha256(b"feedsvc leader").digest()[:8], "big", signed=True)


def write_key(schema: str) -> int:
    """The advisory lock that serialises writes to one schema. PostgreSQL has
    no database-wide write lock like SQLite's: without it two writers (two
    leaders for a moment, a `feedsvc index` beside the service) each decide
    which file of an id is shown from a snapshot without the other's rows,
    and both files end up shown."""
    digest = hashlib.sha256(b"feedsvc write " + schema.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def cause(e: psycopg.Error) -> str:
    """What PostgreSQL said, a full disk first in the words every writer of
    state uses (health.storage_reason: `No space left on device`, from SQLSTATE
    53100 whatever the server's language), its own first line beside it."""
    text = str(e).strip()
    reason = health.storage_reason(e)
    if reason == text:
        return text
    return f"{reason} (SQLSTATE {e.sqlstate}: {text.splitlines()[0]})"


def _sql(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(_sql(sql), params).fetchall()

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        return self.conn.execute(_sql(sql), params).fetchone()

    def run(self, sql: str, params: Params = ()) -> None:
        self.conn.execute(_sql(sql), params)

    def many(self, sql: str, seq: Iterable[Params]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_sql(sql), list(seq))

    def iterate(self, sql: str, params: Params = ()) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor: a million rows arrive in pages, not at once.
        with self.conn.cursor(name=f"feedsvc_{threading.get_ident()}") as cur:
            cur.itersize = 5000
            cur.execute(_sql(sql), params)
            yield from cur


class PostgresDatabase(ReentrantReads):
    kind = "postgres"
    blob = "BYTEA"
    # Paths and ids compare as bytes, as in SQLite: the same order everywhere.
    binary_order = ' COLLATE "C"'

    def __init__(self, url: str, *, namespace: str,
                 tables: Callable[..., list[str]] | None = None) -> None:
        self.url, self.schema = url, f"feedsvc_{namespace}"
        self.tables = tables or schema   # another set than the posts' (index/durable.py)
        super().__init__()
        self._created = False
        self._write_key = write_key(self.schema)

    @property
    def damage(self) -> str | None:
        """Never: PostgreSQL checks its own pages, and a rebuild is not ours to decide."""
        return None

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT, autocommit=True)
        except psycopg.Error as e:
            raise IndexUnavailable(f"PostgreSQL at {redact(self.url)} unreachable: {e}") from e
        try:
            if not self._created:
                self._create(conn)
            conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.Error as e:
            conn.close()
            raise IndexUnavailable(f"PostgreSQL at {redact(self.url)}: {cause(e)}") from e
        return conn

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Instances starting together must not race on CREATE.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [LEADER_KEY ^ 1])
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(f'SET LOCAL search_path TO "{self.schema}"')
            for ddl in self.tables(self.blob, 'TEXT COLLATE "C"'):
                conn.execute(ddl)
        self._created = True

    def _reader(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or getattr(self._local, "pid", 0) != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _outer_read(self) -> Iterator[Tx]:
        conn = self._reader()
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield _PgTx(conn)
        except psycopg.Error as e:
            self._drop(conn)
            raise IndexUnavailable(f"PostgreSQL at {redact(self.url)}: {cause(e)}") from e

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        self._local.conn = None
        with suppress(psycopg.Error):
            conn.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write_lock:
            if self._writer is None or self._writer.closed or self._writer_pid != os.getpid():
                self._writer, self._writer_pid = self._connect(), os.getpid()
            conn = self._writer
            try:
                with conn.transaction():
                    # Held to the commit: the next writer starts from what this one wrote.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", [self._write_key])
                    yield _PgTx(conn)
            except psycopg.Error as e:
                self._writer = None
                with suppress(psycopg.Error):
                    conn.close()
                raise IndexUnavailable(f"PostgreSQL at {redact(self.url)}: {cause(e)}") from e

    def rebuild(self) -> None:
        with self._write_lock:
            conn = self._connect()
            with conn.transaction():
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self._created = False
            self._create(conn)
            conn.close()

    def describe(self) -> dict[str, object]:
        return {"type": self.kind, "url": redact(self.url), "schema": self.schema}


def _leader_name() -> str:
    # PostgreSQL keeps 63 bytes of an application_name.
    return f"feedsvc leader host {socket.gethostname()} pid {os.getpid()}"[:63]


class PgLeader:
    """The cluster's leader: whichever instance holds a session-level advisory
    lock on the shared database. PostgreSQL drops it when that session ends
    (the process died, the machine went away, the network broke), and the
    next instance that tries takes over. The same interface as leader.Leader."""

    def __init__(self, url: str, *, check_every: float = 1.0) -> None:
        self.url, self.check_every = url, check_every
        self._conn: psycopg.Connection[Any] | None = None
        self._pid: int | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._conn is not None and self._pid == os.getpid()

    def acquire(self) -> bool:
        with self._lock:
            if self.is_leader:
                return self._still_held()
            try:
                # Named, so that `feedsvc collect` elsewhere can say who leads (holder()).
                conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                                       application_name=_leader_name())
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_KEY]).fetchone()
            except psycopg.Error as e:
                self.last_error = str(e)
                return False
            if not (row and row[0]):
                conn.close()
                return False
            self._conn, self._pid, self._checked = conn, os.getpid(), time.monotonic()
            self.last_error = None
        leader_log.info("process %d leads the cluster (advisory lock on %s)", os.getpid(),
                 redact(self.url))
        return True

    def _still_held(self) -> bool:
        """A leader whose session broke has lost the lock to whoever took it."""
        if time.monotonic() - self._checked < self.check_every:
            return True
        assert self._conn is not None
        try:
            self._conn.execute("SELECT 1")
            self._checked = time.monotonic()
            return True
        except psycopg.Error as e:
            leader_log.error("lost the cluster leadership (%s)", e)
            self.last_error = str(e)
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = self._pid = None
            return False

    def release(self) -> None:
        with self._lock:
            if self._conn is not None:
                with suppress(psycopg.Error):
                    self._conn.close()
            self._conn = self._pid = None

    def stop(self) -> None:
        """Nothing runs in threads of its own."""

    def holder(self) -> str | None:
        """Who holds the lock now ("host <name> pid <n>", from its session's
        application_name), or None when nobody does or it cannot be asked."""
        key = LEADER_KEY & 0xFFFF_FFFF_FFFF_FFFF
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT,
                                 autocommit=True) as conn:
                row = conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                    [key >> 32, key & 0xFFFF_FFFF]).fetchone()
        except psycopg.Error:
            return None
        if row is None:
            return None
        name = str(row[0] or "")
        return name.removeprefix("feedsvc leader ") or "an instance of the cluster"

    def describe(self) -> dict[str, object]:
        return {"pid": os.getpid(), "is_leader": self.is_leader, "election": "postgres",
                "last_error": self.last_error}
