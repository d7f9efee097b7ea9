"""Where rendered feed documents are kept: in-process by default, Redis when
configured so that several instances share bytes and ETags.

Documents are stored under a digest of everything they are built from, so a
stored document never goes stale and nothing has to be invalidated: a change
to a post changes the digest of the feeds it is in, and only of those.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.http import http_date

from feedsvc import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Document:
    """One feed version: identity bytes, gzip bytes, strong ETag, Last-Modified."""
    body: bytes
    gzip: bytes
    etag: str                   # unquoted hash of `body`
    last_modified: dt.datetime
    mimetype: str
    # The Last-Modified header, formatted once per version rather than per request.
    last_modified_http: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "last_modified_http", http_date(self.last_modified))

    @classmethod
    def of(cls, body: bytes, mimetype: str, last_modified: dt.datetime) -> Document:
        """A new version: gzip made once here (header time 0, so the bytes are the
        same everywhere) and the strong ETag from the body's hash."""
        return cls(body=body, gzip=gzip.compress(body, compresslevel=9, mtime=0),
                   etag=hashlib.sha256(body).hexdigest()[:40], last_modified=last_modified,
                   mimetype=mimetype)

    @property
    def gzip_etag(self) -> str:
        # A strong ETag must differ between content codings (RFC 9110 8.8.3).
        return self.etag + "-gzip"


class Store(Protocol):
    def get(self, digest: str) -> Document | None: ...
    def put(self, digest: str, doc: Document) -> None: ...
    def describe(self) -> dict[str, object]: ...


class MemoryStore:
    """A small LRU of documents for one process, bounded in count and in bytes
    (a crawler paging through every feed of 20,000 posts would otherwise keep
    2,048 documents of ~200 kB each: 400 MB per worker). The bytes are those
    of the documents and of their keys (digests, or the memos' feed keys with
    a version), objects included (issue 15, finding 5)."""

    def __init__(self, max_items: int = 2048, max_bytes: int = 48 * 2**20) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[Hashable, Document] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, digest: Hashable) -> Document | None:
        with self._lock:
            doc = self._items.get(digest)
            if doc is not None:
                self._items.move_to_end(digest)
            return doc

    def put(self, digest: Hashable, doc: Document) -> None:
        with self._lock:
            old = self._items.pop(digest, None)
            self._bytes += _weight(digest, doc) - (_weight(digest, old) if old else 0)
            self._items[digest] = doc
            self._evict()

    def _evict(self) -> None:
        while len(self._items) > 1 and (len(self._items) > self.max_items
                                        or self._bytes > self.max_bytes):
            self._bytes -= _weight(*self._items.popitem(last=False))

    def add(self, digest: Hashable, doc: Document) -> Document:
        """Keep `doc` unless a document is there already; return the one kept
        (one copy of each version in memory, whoever fetched it first)."""
        with self._lock:
            kept = self._items.setdefault(digest, doc)
            self._items.move_to_end(digest)
            if kept is doc:
                self._bytes += _weight(digest, doc)
            self._evict()
            return kept

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def describe(self) -> dict[str, object]:
        return {"type": "memory", "documents": len(self._items)}


class RedisStore:
    """Documents in Redis hashes, with the in-process store in front of it.

    When Redis cannot be reached the service goes on from the in-process store
    and its own rendering, logs it once, and tries Redis again after `retry`
    seconds. The documents rendered meanwhile are written to Redis when it is
    back, so the other instances find them there.

    No request waits for Redis more than one `timeout` (issue 15, finding 12:
    the first request after Redis came back waited 1.5 s): the documents
    rendered while Redis was away are written by a background thread, not by
    the request that noticed Redis is back (that request wrote them all, one
    round trip each: 11 s for 60 documents over a slow link in
    tests/test_redis_waits.py), and redis-py's own retries are off (its
    default policy retries up to 10 times with backoff; this class has its own
    schedule).
    """

    PREFIX = "feedsvc:doc:"
    # Superseded versions are never asked for again; a current one is kept
    # alive by every instance that reads it (get() renews the TTL).
    TTL = 86400

    def __init__(self, url: str, retry: float = 2.0, timeout: float = 0.5) -> None:
        self.url, self.retry = redact.url(url), retry
        self.client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                           socket_timeout=timeout,
                                           retry=Retry(NoBackoff(), retries=0))
        self.local = MemoryStore()
        self._down_until = 0.0
        self.last_error: str | None = None
        self._pending: OrderedDict[str, None] = OrderedDict()  # rendered while Redis was away
        self._pending_lock = threading.Lock()
        self._flushing = threading.Lock()      # one flushing thread at a time

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, e: Exception) -> None:
        if self.last_error is None:
            log.error("redis at %s unavailable (%s); serving from in-process rendering",
                      self.url, e)
        self.last_error = redact.text(str(e))
        self._down_until = time.monotonic() + self.retry

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.warning("redis at %s is back", self.url)
            self.last_error = None
            if self._pending:
                threading.Thread(target=self._flush, name="feedsvc-redis-flush",
                                 daemon=True).start()

    def _remember(self, digest: str) -> None:
        with self._pending_lock:
            self._pending[digest] = None
            while len(self._pending) > self.local.max_items:
                self._pending.popitem(last=False)

    def _flush(self) -> None:
        if not self._flushing.acquire(blocking=False):
            return   # another thread is at it; what it does not take stays pending
        try:
            # A write that times out halfway (a slow or loaded link) leaves the
            # rest pending; with no request to notice Redis again they would
            # wait for traffic. While a pass gets some written, the next one
            # follows after the retry interval; a pass that writes nothing
            # (Redis really away) ends it, and the next request that finds
            # Redis back starts again (_recovered).
            while self._flush_pending():
                time.sleep(max(0.0, self._down_until - time.monotonic()))
        finally:
            self._flushing.release()

    def _flush_pending(self) -> bool:
        """Write what is pending; True when a failure stopped it after it had
        written something (worth another pass), False when done or nothing went."""
        with self._pending_lock:
            digests, self._pending = list(self._pending), OrderedDict()
        written = 0
        for i, digest in enumerate(digests):
            doc = self.local.get(digest)
            if doc is None:
                continue
            try:
                self._write(digest, doc)
            except redis.RedisError as e:
                self._failed(e)
                for rest in digests[i:]:
                    self._remember(rest)
                return written > 0
            written += 1
        return False

    def get(self, digest: str) -> Document | None:
        doc = self.local.get(digest)
        if doc is not None or not self._available():
            return doc
        key = self.PREFIX + digest
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(key)
                pipe.expire(key, self.TTL)
                raw, _ = pipe.execute()
        except redis.RedisError as e:
            self._failed(e)
            return None
        self._recovered()
        doc = _decode(raw)
        return None if doc is None else self.local.add(digest, doc)

    def put(self, digest: str, doc: Document) -> None:
        self.local.put(digest, doc)
        if not self._available():
            self._remember(digest)
            return
        try:
            self._write(digest, doc)
        except redis.RedisError as e:
            self._failed(e)
            self._remember(digest)
            return
        self._recovered()

    def _write(self, digest: str, doc: Document) -> None:
        key = self.PREFIX + digest
        with self.client.pipeline() as pipe:
            pipe.hset(key, mapping={
                "body": doc.body, "gzip": doc.gzip, "etag": doc.etag,
                "last_modified": doc.last_modified.isoformat(), "mimetype": doc.mimetype,
            })
            pipe.expire(key, self.TTL)
            pipe.execute()

    def ping(self) -> bool:
        """Check Redis now (for /status), whatever the retry schedule says."""
        try:
            self.client.ping()
        except redis.RedisError as e:
            self._failed(e)
            return False
        self._down_until = 0.0
        self._recovered()
        return True

    def describe(self) -> dict[str, object]:
        available = self.ping()
        return {"type": "redis", "url": self.url, "available": available,
                "last_error": self.last_error, "local_documents": len(self.local),
                "waiting_for_redis": len(self._pending)}


def _decode(raw: Mapping[Any, Any]) -> Document | None:
    try:
        return Document(
            body=raw[b"body"], gzip=raw[b"gzip"], etag=raw[b"etag"].decode(),
            last_modified=dt.datetime.fromisoformat(raw[b"last_modified"].decode()),
            mimetype=raw[b"mimetype"].decode(),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


# The Document object and its seven fields' objects, the LRU's link and slot
# (sys.getsizeof on 64-bit CPython 3.11; tests/test_memory_bounds.py checks it).
DOC_OVERHEAD = 700


def _weight(key: Hashable, doc: Document) -> int:
    return (len(doc.body) + len(doc.gzip) + len(doc.etag) + len(doc.mimetype)
            + len(doc.last_modified_http) + DOC_OVERHEAD + _key_weight(key))


def _key_weight(key: Hashable) -> int:
    # A digest (str), or a memo's (feed key, version) tuple: its text is what grows.
    return 50 + (len(key) if isinstance(key, str) else len(repr(key)) + 200)


def make_store(kind: str, url: str | None) -> Store:
    if kind == "redis" and url:
        return RedisStore(url)
    return MemoryStore()
