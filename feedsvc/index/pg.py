"""The index in PostgreSQL (psycopg 3), for several instances on one index:
the same tables as SQLite (db.schema) in a schema of their own per set of
post reading rules, and the cluster's leader elected by an advisory lock.

Reads run in REPEATABLE READ transactions (one snapshot, as SQLite's WAL
gives); every thread has its own connection, opened again after a failure,
so an outage costs the requests made during it (503, never a 500) and
nothing after it.

Every wait on PostgreSQL is bounded (README, "PostgreSQL that stops
answering"): a connection attempt by CONNECT_TIMEOUT, every statement by a
deadline of this process's own (_Watchdog: a partition or a frozen server
neither answers nor fails, and no TCP setting tells a silent server from a
busy one), and the server gives up sessions whose client went silent
(SESSION_OPTIONS), so that the locks a vanished instance held, the leader's
among them, come free.
"""

from __future__ import annotations

import hashlib
import heapq
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
from psycopg.conninfo import conninfo_to_dict

from feedsvc import health
from feedsvc.index.db import IndexUnavailable, Params, ReentrantReads, Tx, schema

# Elections log where leader.Leader's do: one logger to quiet (`feedsvc collect`) or follow.
leader_log = logging.getLogger("feedsvc.leader")
CONNECT_TIMEOUT = 3
# Seconds a statement may go unanswered before its connection is given up:
# a request's read (a feed then answers what it last served, or 503), the
# writer's statements (the first indexing of a million posts writes 1,000 rows
# a statement, and one waits for the write lock of another writer, whose own
# transaction the server ends after IDLE_IN_TRANSACTION if its client vanished),
# and the leader's check of its session.
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 30.0
LEADER_TIMEOUT = 3.0
# After a read found PostgreSQL silent or unreachable, this process's reads
# fail at once with the same cause for READ_RETRY seconds, then one read tries
# again (the others still fail at once while it does): during an outage a
# worker's requests do not each wait out the bounds above.
READ_RETRY = 2.0
# Server side, per session: a transaction left open by a client gone silent
# ends (with the write lock it holds) after 20 s; the leader's session, which
# checks itself every second, after 10 s of silence (its advisory lock comes
# free for a standby); keepalives and tcp_user_timeout end a session whose
# client's machine is gone within about 10 s; a read nobody waits for any
# longer stops at 10 s.
IDLE_IN_TRANSACTION = 20_000
LEADER_IDLE = 10_000
SESSION_OPTIONS = (f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION}"
                   " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2"
                   " -c tcp_keepalives_count=3 -c tcp_user_timeout=10000")
READ_OPTIONS = SESSION_OPTIONS + " -c statement_timeout=10000"
LEADER_OPTIONS = SESSION_OPTIONS + f" -c idle_session_timeout={LEADER_IDLE}"
# The client's side of the same: a dead peer's socket fails within about 10 s
# even while nothing is being asked (libpq's keepalives, tcp_user_timeout in ms).
CLIENT_TCP: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                              "keepalives_count": 3, "tcp_user_timeout": 10_000}
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


class NoAnswer(psycopg.OperationalError):
    """A statement PostgreSQL left unanswered past its deadline; its
    connection was given up."""


class _Armed:
    __slots__ = ("deadline", "fd", "fired", "seconds")

    def __init__(self, deadline: float, fd: int, seconds: float) -> None:
        self.deadline, self.fd, self.seconds, self.fired = deadline, fd, seconds, False

    def __lt__(self, other: _Armed) -> bool:
        return self.deadline < other.deadline


class _Watchdog:
    """One thread per process that shuts down the socket of a connection whose
    statement outlived its deadline: libpq's wait then ends with an error, as it
    would have had the server gone away for good. It sleeps while nothing is
    armed (idle CPU), and a socket is shut down only while its statement is
    still armed (disarm takes the same lock), so never another's that reuses
    the number."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Armed] = []
        self._pid = 0

    def arm(self, conn: psycopg.Connection[Any], seconds: float) -> _Armed:
        entry = _Armed(time.monotonic() + seconds, conn.pgconn.socket, seconds)
        with self._cond:
            if self._pid != os.getpid():
                # A forked child has no thread of ours yet.
                self._pid, self._heap = os.getpid(), []
                threading.Thread(target=self._run, name="feedsvc-pg-deadlines",
                                 daemon=True).start()
            first = not self._heap or entry < self._heap[0]
            heapq.heappush(self._heap, entry)
            if first:
                self._cond.notify()
        return entry

    def disarm(self, entry: _Armed) -> None:
        with self._cond:
            entry.fd = -1     # skipped when its time comes; the answered ones first go now
            while self._heap and self._heap[0].fd < 0:
                heapq.heappop(self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0].fd < 0:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                entry.fired = True
                with suppress(OSError):
                    sock = socket.socket(fileno=os.dup(entry.fd))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()
                entry.fd = -1


    def forked(self) -> None:
        """In a forked child: no thread of ours, and a lock that may have been
        held by it at the fork (gunicorn forks its workers)."""
        self._cond, self._heap, self._pid = threading.Condition(), [], 0


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.forked)


@contextmanager
def answered(conn: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
    """Run a round trip on `conn` that must be answered within `seconds`;
    past that its connection is given up and NoAnswer raised."""
    entry = _WATCHDOG.arm(conn, seconds)
    try:
        yield
    except psycopg.Error as e:
        if entry.fired:
            raise NoAnswer(f"no answer in {seconds:g} s (the connection was given up)") from e
        raise
    finally:
        _WATCHDOG.disarm(entry)
    if entry.fired:
        # Answered just as the deadline came: the socket is shut all the same.
        raise NoAnswer(f"no answer in {seconds:g} s (the connection was given up)")


def connect(url: str, options: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection with every wait bounded: CONNECT_TIMEOUT for the attempt,
    TCP keepalives, and the server-side `options` (SESSION_OPTIONS and kin)
    after any the URL names."""
    own = conninfo_to_dict(url).get("options")
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                           options=f"{own} {options}" if own else options,
                           **CLIENT_TCP, **kwargs)


def run(conn: psycopg.Connection[Any], seconds: float, sql: str,
        params: Params | None = None) -> list[tuple[Any, ...]]:
    """One statement within `seconds`; its rows (none for a command)."""
    with answered(conn, seconds):
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self.conn, self.seconds = conn, seconds

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with answered(self.conn, self.seconds):
            return self.conn.execute(_sql(sql), params).fetchall()

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        with answered(self.conn, self.seconds):
            return self.conn.execute(_sql(sql), params).fetchone()

    def run(self, sql: str, params: Params = ()) -> None:
        with answered(self.conn, self.seconds):
            self.conn.execute(_sql(sql), params)

    def many(self, sql: str, seq: Iterable[Params]) -> None:
        with answered(self.conn, self.seconds), self.conn.cursor() as cur:
            cur.executemany(_sql(sql), list(seq))

    def iterate(self, sql: str, params: Params = ()) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor: a million rows arrive in pages, not at once,
        # each page within the deadline (not the whole: the caller works between).
        cur = self.conn.cursor(name=f"feedsvc_{threading.get_ident()}")
        try:
            with answered(self.conn, self.seconds):
                cur.execute(_sql(sql), params)
            while True:
                with answered(self.conn, self.seconds):
                    page = cur.fetchmany(5000)
                if not page:
                    return
                yield from page
        finally:
            if not self.conn.closed:
                with answered(self.conn, self.seconds):
                    cur.close()


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
        self._down: tuple[float, str] | None = None    # (until, why): see READ_RETRY
        self._down_lock = threading.Lock()

    @property
    def damage(self) -> str | None:
        """Never: PostgreSQL checks its own pages, and a rebuild is not ours to decide."""
        return None

    def _connect(self, options: str = READ_OPTIONS) -> psycopg.Connection[Any]:
        try:
            conn = connect(self.url, options)
        except psycopg.Error as e:
            raise IndexUnavailable(f"PostgreSQL at {redact(self.url)} unreachable: {e}") from e
        try:
            if not self._created:
                self._create(conn)
            run(conn, READ_TIMEOUT, f'SET search_path TO "{self.schema}"')
        except psycopg.Error as e:
            conn.close()
            raise IndexUnavailable(f"PostgreSQL at {redact(self.url)}: {cause(e)}") from e
        return conn

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        with self._transaction(conn, WRITE_TIMEOUT, "BEGIN"):
            # Instances starting together must not race on CREATE.
            run(conn, WRITE_TIMEOUT, "SELECT pg_advisory_xact_lock(%s)", [LEADER_KEY ^ 1])
            run(conn, WRITE_TIMEOUT, f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            run(conn, WRITE_TIMEOUT, f'SET LOCAL search_path TO "{self.schema}"')
            for ddl in self.tables(self.blob, 'TEXT COLLATE "C"'):
                run(conn, WRITE_TIMEOUT, ddl)
        self._created = True

    @staticmethod
    @contextmanager
    def _transaction(conn: psycopg.Connection[Any], seconds: float,
                     begin: str | None) -> Iterator[None]:
        """BEGIN … COMMIT on an autocommit connection, each a round trip
        within `seconds` (psycopg's own transaction() waits without bound);
        ROLLBACK on any error, the connection left for the caller to drop
        when that fails too. `begin` None: begun already (_begin)."""
        if begin is not None:
            run(conn, seconds, begin)
        try:
            yield
        except BaseException:
            if not conn.closed:
                with suppress(psycopg.Error):
                    run(conn, seconds, "ROLLBACK")
            raise
        run(conn, seconds, "COMMIT")

    @staticmethod
    def _begin(conn: psycopg.Connection[Any], kept: bool, seconds: float, begin: str,
               reconnect: Callable[[], psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
        """BEGIN on `conn`, the connection the transaction then runs on. One
        kept from before that turns out cut (while it was idle: an outage
        that has ended, a restarted server) is replaced once by a new one,
        so that the first use after an outage does not fail for nothing."""
        try:
            run(conn, seconds, begin)
            return conn
        except psycopg.OperationalError as e:
            if not kept or isinstance(e, NoAnswer):
                raise
        with suppress(psycopg.Error):
            conn.close()
        conn = reconnect()
        run(conn, seconds, begin)
        return conn

    def _reader(self) -> tuple[psycopg.Connection[Any], bool]:
        """This thread's connection, and whether it was kept from before."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or getattr(self._local, "pid", 0) != os.getpid():
            return self._new_reader(), False
        return conn, True

    def _new_reader(self) -> psycopg.Connection[Any]:
        self._local.conn = None
        conn = self._connect()
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _outer_read(self) -> Iterator[Tx]:
        self._gate()
        conn: psycopg.Connection[Any] | None = None
        try:
            conn, kept = self._reader()
            conn = self._begin(conn, kept, READ_TIMEOUT,
                               "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                               self._new_reader)
            with self._transaction(conn, READ_TIMEOUT, None):
                yield _PgTx(conn, READ_TIMEOUT)
        except IndexUnavailable as e:
            self._went_down(e)
            raise
        except psycopg.Error as e:
            if conn is not None:
                self._drop(conn)
            error = IndexUnavailable(f"PostgreSQL at {redact(self.url)}: {cause(e)}")
            error.__cause__ = e
            self._went_down(error)
            raise error from e
        if self._down is not None:
            with self._down_lock:
                self._down = None

    def _gate(self) -> None:
        """Fail at once while PostgreSQL was found away less than READ_RETRY ago."""
        if self._down is None:
            return
        with self._down_lock:
            if self._down is None:
                return
            until, why = self._down
            now = time.monotonic()
            if now < until or getattr(self._local, "no_retry", False):
                raise IndexUnavailable(why)
            # This read tries; the others fail at once until it is done.
            self._down = (now + CONNECT_TIMEOUT + READ_TIMEOUT, why)

    @contextmanager
    def no_retry(self) -> Iterator[None]:
        self._local.no_retry = True
        try:
            yield
        finally:
            self._local.no_retry = False

    def _went_down(self, error: IndexUnavailable) -> None:
        """Only an outage (no answer, no connection) holds reads back, not a
        statement PostgreSQL refused."""
        if isinstance(error.__cause__, psycopg.OperationalError) or "unreachable" in str(error):
            with self._down_lock:
                self._down = (time.monotonic() + READ_RETRY, str(error))

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        self._local.conn = None
        with suppress(psycopg.Error):
            conn.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write_lock:
            kept = not (self._writer is None or self._writer.closed
                        or self._writer_pid != os.getpid())
            if not kept:
                self._writer = None
                self._writer, self._writer_pid = self._new_writer(), os.getpid()
            conn = self._writer
            try:
                conn = self._begin(conn, kept, WRITE_TIMEOUT, "BEGIN", self._new_writer)
                self._writer = conn
                with self._transaction(conn, WRITE_TIMEOUT, None):
                    # Held to the commit: the next writer starts from what this one wrote.
                    run(conn, WRITE_TIMEOUT, "SELECT pg_advisory_xact_lock(%s)",
                        [self._write_key])
                    yield _PgTx(conn, WRITE_TIMEOUT)
            except psycopg.Error as e:
                self._writer = None
                with suppress(psycopg.Error):
                    conn.close()
                raise IndexUnavailable(f"PostgreSQL at {redact(self.url)}: {cause(e)}") from e

    def _new_writer(self) -> psycopg.Connection[Any]:
        return self._connect(SESSION_OPTIONS)

    def rebuild(self) -> None:
        with self._write_lock:
            conn = self._connect(SESSION_OPTIONS)
            with self._transaction(conn, WRITE_TIMEOUT, "BEGIN"):
                run(conn, WRITE_TIMEOUT, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
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
    next instance that tries takes over. The same interface as leader.Leader.

    While it leads, a thread of its own checks the session every `check_every`
    seconds, each check answered within LEADER_TIMEOUT or the leadership is
    given up; the server ends the session after LEADER_IDLE of silence (a
    leader cut off or frozen), so a standby can take over in bounded time and
    the old leader has stopped by then (1 + 3 s < 10 s)."""

    def __init__(self, url: str, *, check_every: float = 1.0) -> None:
        self.url, self.check_every = url, check_every
        self._conn: psycopg.Connection[Any] | None = None
        self._pid: int | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
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
                conn = connect(self.url, LEADER_OPTIONS, application_name=_leader_name())
            except psycopg.Error as e:
                self.last_error = self._why(e)
                return False
            try:
                row = run(conn, LEADER_TIMEOUT, "SELECT pg_try_advisory_lock(%s)", [LEADER_KEY])
            except psycopg.Error as e:
                self.last_error = self._why(e)
                with suppress(psycopg.Error):
                    conn.close()
                return False
            if not (row and row[0][0]):
                # PostgreSQL answered: another instance leads. An error of an
                # earlier try (an outage, a lost lead) is over, and a standby
                # must not show it in /status until it happens to lead.
                self.last_error = None
                conn.close()
                return False
            self._conn, self._pid, self._checked = conn, os.getpid(), time.monotonic()
            self.last_error = None
            self._stop.clear()
            threading.Thread(target=self._keep, args=(conn,), name="feedsvc-pg-leader",
                             daemon=True).start()
        leader_log.info("process %d leads the cluster (advisory lock on %s)", os.getpid(),
                 redact(self.url))
        return True

    def _keep(self, conn: psycopg.Connection[Any]) -> None:
        """Check the session while it is this leader's: a leader that nobody
        asks (an idle watcher) still finds out, and its session is never
        silent long enough for the server to end it."""
        while not self._stop.wait(self.check_every):
            with self._lock:
                if self._conn is not conn or not self.is_leader:
                    return
                self._checked = 0.0
                if not self._still_held():
                    return

    def _still_held(self) -> bool:
        """A leader whose session broke has lost the lock to whoever took it."""
        if time.monotonic() - self._checked < self.check_every:
            return True
        assert self._conn is not None
        try:
            run(self._conn, LEADER_TIMEOUT, "SELECT 1")
            self._checked = time.monotonic()
            return True
        except psycopg.Error as e:
            self.last_error = self._why(e)
            leader_log.error("lost the cluster leadership (%s)", self.last_error)
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = self._pid = None
            return False

    def _why(self, e: psycopg.Error) -> str:
        return f"PostgreSQL at {redact(self.url)}: {str(e).strip().splitlines()[0]}"

    def release(self) -> None:
        with self._lock:
            self._stop.set()
            if self._conn is not None:
                with suppress(psycopg.Error):
                    self._conn.close()
            self._conn = self._pid = None

    def stop(self) -> None:
        """End the check of a session this process no longer needs (release() does)."""
        self._stop.set()

    def holder(self) -> str | None:
        """Who holds the lock now ("host <name> pid <n>", from its session's
        application_name), or None when nobody does or it cannot be asked."""
        key = LEADER_KEY & 0xFFFF_FFFF_FFFF_FFFF
        try:
            with connect(self.url, READ_OPTIONS) as conn:
                rows = run(
                    conn, READ_TIMEOUT,
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                    [key >> 32, key & 0xFFFF_FFFF])
        except psycopg.Error:
            return None
        if not rows:
            return None
        name = str(rows[0][0] or "")
        return name.removeprefix("feedsvc leader ") or "an instance of the cluster"

    def describe(self) -> dict[str, object]:
        return {"pid": os.getpid(), "is_leader": self.is_leader, "election": "postgres",
                "last_error": self.last_error}
