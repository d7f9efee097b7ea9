"""The post index: every post under posts_dir with its rendered body, the
problems found, and the views the feeds are cut from (category, tag,
site-wide, pages, counts, newest) — in a database shared by every worker
(SQLite in state_dir, or PostgreSQL for a cluster: db.py, pg.py).

One process writes (the leader: the one that watches posts_dir); every
worker reads. A change costs work in proportion to what changed: the rows of
the changed posts, their terms and counts, and one new generation, which
every worker sees at its next request. A worker keeps no posts in memory:
each request reads its page of posts in one snapshot (`Views`), so a
response is made of one version, never two.

A rescan compares the stats of the files with those stored (in a scratch
database, so that a million posts need no million-entry dict); only changed
files are read. A first indexing reads them on every core (reading.py) and
the index says it is not ready until it is done.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feedsvc import dates, health
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.content import Rendered, render_body
from feedsvc.errors import FeedsvcError
from feedsvc.index import archives, records
from feedsvc.index.db import Database, IndexUnavailable, SqliteDatabase, Tx
from feedsvc.index.files import is_post_path, iter_post_files, iter_post_stats, stat_post_files
from feedsvc.index.reading import Progress, Row, read_rows
from feedsvc.posts import Post

__all__ = ["INDEX_FORMAT", "Index", "IndexUnavailable", "NotReady", "Stale", "Views",
           "index_identity", "is_post_path", "iter_post_files", "stat_post_files"]

log = logging.getLogger(__name__)
INDEX_FORMAT = 10  # bump when post reading rules or the tables change: the old index is rebuilt
SHOWN = ("#", "")  # the count of every shown post (counts; '*' counts the site-wide feed's)
SEP = "\x1f"       # between the categories of a post in `posts.cats` (never in a category)
BATCH = 500        # files per write transaction
WRITE_BATCH = 1000 # rows read per write transaction (a first indexing)
RENDERED_MAX = 1024     # rendered bodies a worker keeps (~10 kB each)
MAX_REPORTED = 10_000   # changed paths a scan hands back (a first indexing may change millions)
_US = dt.timedelta(microseconds=1)


class NotReady(FeedsvcError):
    """The first indexing is not done: feeds would be partial (HTTP 503)."""


class Stale(FeedsvcError):
    """The index moved to a new version while a response was being made from
    the old one: make it again from the new one."""


def index_identity(config: Config) -> tuple[Any, ...]:
    """What in the config changes how posts are read and rendered (not how
    feeds look): another value means another index."""
    zones = sorted((s, c.timezone) for s, c in config.categories.items() if c.timezone)
    return (INDEX_FORMAT, records.FIELDS, config.site.url, config.site.timezone, config.permalink,
            zones, config.baseurl, sorted(config.markdown_ext), sorted(config.skip_dirs),
            config.jekyll_feed is not None, config.jekyll_reading,
            # Whether each story is shown once: which copy the site-wide and tag
            # feeds carry is kept in the index, so the switch picks another one.
            config.near_duplicates.show_once)


def story_key(post: Post, show_once: bool) -> str:
    """The story a post is in (README, "The same story once"): a reprint's
    `story:` (the upstream id of its story's first copy, upstream/stories.py),
    else a collected post's own upstream id (so the first copy meets its
    reprints), else its own id; with show_once off, every post is its own."""
    if show_once and (post.story or post.source_guid):
        return "s:" + (post.story or post.source_guid or "")
    return "g:" + post.guid


def story_ranks(config: Config) -> dict[str, int]:
    """Config order of the categories: the tie rule between copies of one date."""
    return {slug: i for i, slug in enumerate(config.categories)}


def story_order(post: Post, ranks: Mapping[str, int]) -> tuple[int, int, str]:
    """Copies of a story in this order: earliest date, then the config order of
    the first configured category, then the path."""
    rank = next((ranks[c] for c in post.categories if c in ranks), len(ranks))
    return (_us(post.date), rank, post.rel)


def identity_digest(config: Config) -> str:
    return hashlib.sha256(repr(index_identity(config)).encode()).hexdigest()[:16]


def _us(when: dt.datetime) -> int:
    return (when - dates.EPOCH) // _US


_post = records.unpack_post


def open_database(config: Config) -> Database:
    """The configured database: SQLite in state_dir unless `index:` says otherwise."""
    if config.index.type == "postgres" and config.index.url:
        from feedsvc.index.pg import PostgresDatabase

        return PostgresDatabase(config.index.url, namespace=identity_digest(config))
    path = config.state_dir / f"index-{identity_digest(config)}.sqlite3"
    try:
        return SqliteDatabase(path)
    except (OSError, IndexUnavailable) as e:
        # No usable state_dir (read-only, full, locked): still serve, from an index
        # of this process's own, which it writes itself (Index.private).
        tmp = Path(tempfile.mkdtemp(prefix="feedsvc-index-")) / path.name
        log.error("cannot keep the index in %s (%s); using %s until restart", path.parent, e, tmp)
        db = SqliteDatabase(tmp)
        db.private = True
        return db


# -- reading: one snapshot per response ---------------------------------------------
class Views:
    """What the feeds are cut from, at one version of the index.

    Every query checks, in its own transaction, that the index is still at
    this version and raises Stale otherwise; so what one Views hands out is
    one version. Cheap to make: nothing is read until asked."""

    def __init__(self, index: Index, generation: int, ready: bool, due: int,
                 now: dt.datetime) -> None:
        self.index, self.generation, self.ready, self.now = index, generation, ready, now
        self.version = (generation, due)
        self._now_us = _us(now)
        self._future: list[tuple[Post, bool, frozenset[str]]] | None = None
        self._catsets: dict[str, int] | None = None
        self._newest: dt.datetime | None = None

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self.index.db.read() as tx:
            row = tx.one("SELECT value FROM meta WHERE key = 'generation'")
            if int(row[0] if row else 0) != self.generation:
                raise Stale("the index changed")
            yield tx

    # -- what feeds need ----------------------------------------------------------
    def posts(self, kind: str, name: str, offset: int, limit: int) -> list[Post]:
        """The visible posts of a feed (kind 'category', 'tag' or 'all'), newest
        first, ties by ascending id; `limit` of them from `offset`. The site-wide
        and tag feeds carry one copy of each story, a category every copy."""
        where, params = self._all_filter() if kind == "all" else ("", [])
        with self._read() as tx:
            if kind == "all":
                rows = tx.rows("SELECT record FROM posts WHERE lead = 1 AND date_us <= ?" + where
                               + " ORDER BY date_us DESC, guid LIMIT ? OFFSET ?",
                               [self._now_us, *params, limit, offset])
            else:
                rows = tx.rows("SELECT p.record FROM terms t JOIN posts p ON p.rel = t.rel"
                               " WHERE t.kind = ? AND t.term = ? AND t.date_us <= ?"
                               " ORDER BY t.date_us DESC, t.guid LIMIT ? OFFSET ?",
                               [kind[0], name, self._now_us, limit, offset])
        return [_post(r[0]) for r in rows]

    def count(self, kind: str, name: str) -> int:
        """How many visible posts a feed has (kind as in posts())."""
        if kind == "all":
            sets = self.catsets()
            keep = self._all_sets()
            return sum(sets[s] for s in keep) - sum(
                1 for p, lead, _ in self._due() if lead and SEP.join(p.categories) in keep)
        with self._read() as tx:
            row = tx.one("SELECT n FROM counts WHERE kind = ? AND term = ?", [kind[0], name])
        due = sum(1 for p, _, fronts in self._due()
                  if name in (p.categories if kind == "category" else fronts))
        return int(row[0] if row else 0) - due

    def rendered(self, posts: Iterable[Post]) -> list[Rendered]:
        """The rendered bodies of `posts`, from the bodies indexed with them (the
        same version): rendered once per process and post version, then kept in
        a bounded cache."""
        config = self.index.config
        site, length = config.site.url, config.summary_length
        posts = list(posts)
        keys = [(p.rel, p.mtime_ns, p.size, p.kind, p.url, p.excerpt, site, length)
                for p in posts]
        out = [_RENDERED.get(k) for k in keys]
        missing = [p.rel for p, r in zip(posts, out, strict=True) if r is None]
        if not missing:
            return [r for r in out if r is not None]
        with self._read() as tx:
            rows = dict(tx.rows("SELECT rel, body FROM posts WHERE rel IN ("
                                + ",".join("?" * len(missing)) + ")", missing))
        for i, (post, key) in enumerate(zip(posts, keys, strict=True)):
            if out[i] is not None:
                continue
            if post.rel not in rows:
                raise Stale(f"{post.rel} left the index")
            out[i] = _RENDERED.put(key, _render(post, records.unpack_body(rows[post.rel]), site,
                                                length))
        return [r for r in out if r is not None]

    def tag_counts(self) -> dict[str, int]:
        """Visible posts per tag, for every tag that has one."""
        with self._read() as tx:
            counts = dict(tx.rows("SELECT term, n FROM counts WHERE kind = 't' AND n > 0"))
        for _, _, fronts in self._due():
            for tag in fronts:
                counts[tag] -= 1
        return {t: n for t, n in counts.items() if n > 0}

    def has_tag(self, tag: str) -> bool:
        return self.count("tag", tag) > 0

    @property
    def newest_updated(self) -> dt.datetime:
        """The newest `updated` of any visible post (the epoch when there is none)."""
        if self._newest is None:
            post = self._newest_by("updated_us")
            self._newest = post.updated if post else dates.EPOCH
        return self._newest

    def newest_modified(self) -> dt.datetime:
        """The newest change (updated, or the file's mtime) of any visible post."""
        post = self._newest_by("modified_us")
        return post.modified if post else dates.EPOCH

    def _newest_by(self, column: str) -> Post | None:
        with self._read() as tx:
            # `+date_us`: not a range for an index, so that the planner walks the
            # (published, column) index from the top instead of sorting every post
            # in the date range (10 s at a million posts).
            row = tx.one(f"SELECT record FROM posts WHERE published = 1 AND +date_us <= ?"  # noqa: S608
                         f" ORDER BY {column} DESC LIMIT 1", [self._now_us])
        return _post(row[0]) if row else None

    def total(self) -> int:
        """Every visible post some feed carries (one per id; every copy of a
        story: each is in its category's feed), whatever its categories."""
        with self._read() as tx:
            row = tx.one("SELECT n FROM counts WHERE kind = '#' AND term = ''")
        return int(row[0] if row else 0) - len(self._due())

    def copies(self, posts: Iterable[Post]) -> list[tuple[str, ...]]:
        """Per post, the original links (else permalinks) of the other visible
        copies of its story, in date then config order: what a site-wide or tag
        feed says about the copies it does not carry."""
        config = self.index.config
        posts = list(posts)
        keys = [story_key(p, config.near_duplicates.show_once) for p in posts]
        wanted = sorted({k for k in keys if k.startswith("s:")})
        groups: dict[str, list[Post]] = {}
        if wanted:
            with self._read() as tx:
                rows = tx.rows("SELECT story, record FROM posts WHERE story IN ("
                               + ",".join("?" * len(wanted)) + ") AND shown = 1"
                               " AND date_us <= ?", [*wanted, self._now_us])
            for key, record in rows:
                groups.setdefault(key, []).append(_post(record))
        ranks = story_ranks(config)
        out: list[tuple[str, ...]] = []
        for post, key in zip(posts, keys, strict=True):
            group = groups.get(key, [])
            if not _grouped(group):
                out.append(())
                continue
            others = sorted((p for p in group if p.rel != post.rel),
                            key=lambda p: story_order(p, ranks))
            out.append(tuple(p.source_url or p.url for p in others))
        return out

    # -- archived feeds (RFC 5005 section 4, archives.py) -------------------------------
    def archive_taken(self, kind: str, name: str) -> int:
        """How many archive numbers a feed has given out (kind as in posts()):
        archives of `size` posts are ceil(taken / size), the last one filling."""
        with self._read() as tx:
            return archives.next_seq(tx, *_feed(kind, name)) - 1

    def archive_posts(self, kind: str, name: str, number: int, size: int) -> list[Post]:
        """The visible posts of archive `number` (1 the oldest), newest first."""
        first = (number - 1) * size + 1
        with self._read() as tx:
            rows = archives.records(tx, *_feed(kind, name), first, first + size - 1,
                                    self._now_us)
        return [_post(r) for r in rows]

    def archive_fingerprints(self, kind: str, name: str, size: int) -> tuple[int, list[str]]:
        """archives.fingerprints() of one feed at this version: how many numbers
        it gave out, and a digest per archive of `size` posts (1 the oldest)."""
        with self._read() as tx:
            return archives.fingerprints(tx, *_feed(kind, name), size, self._now_us)

    # -- the site-wide feed: posts in any configured category ------------------------
    def future(self) -> list[Post]:
        """The shown posts whose date has not come (few: they are subtracted from counts)."""
        return [p for p, _, _ in self._due()]

    def _due(self) -> list[tuple[Post, bool, frozenset[str]]]:
        """future(), each with whether the site-wide feed carries it and the
        tags whose feeds do."""
        if self._future is None:
            with self._read() as tx:
                rows = tx.rows("SELECT record, lead, fronts FROM posts WHERE shown = 1"
                               " AND date_us > ?", [self._now_us])
            self._future = [(_post(r[0]), bool(r[1]), frozenset(json.loads(r[2])))
                            for r in rows]
        return self._future

    @property
    def expires(self) -> dt.datetime | None:
        """When the next future post comes due (the version moves then)."""
        return min((p.date for p in self.future()), default=None)

    def catsets(self) -> dict[str, int]:
        if self._catsets is None:
            with self._read() as tx:
                self._catsets = dict(tx.rows("SELECT term, n FROM counts WHERE kind = 's'"
                                             " AND n > 0"))
        return self._catsets

    def _all_sets(self) -> set[str]:
        # The site-wide feed carries every published post, whatever its categories,
        # as jekyll-feed's /feed.xml does (DESIGN.md).
        return set(self.catsets())

    def _all_filter(self) -> tuple[str, list[str]]:
        keep = self._all_sets()
        if len(keep) == len(self.catsets()):
            return "", []
        if not keep:
            return " AND 0 = 1", []
        return " AND cats IN (" + ",".join("?" * len(keep)) + ")", sorted(keep)

    # -- whole lists (tools and tests; feeds take pages) -----------------------------------
    @property
    def all(self) -> list[Post]:
        """The site-wide feed's posts (each story once), newest first."""
        return self._visible("lead")

    @property
    def in_feeds(self) -> list[Post]:
        """Every post some feed carries (each id once, every copy of a story), newest first."""
        return self._visible("shown")

    def _visible(self, column: str) -> list[Post]:
        with self._read() as tx:
            rows = tx.rows(f"SELECT record FROM posts WHERE {column} = 1 AND date_us <= ?"  # noqa: S608
                           " ORDER BY date_us DESC, guid", [self._now_us])
        return [_post(r[0]) for r in rows]

    @property
    def categories(self) -> dict[str, list[Post]]:
        with self._read() as tx:
            names = [r[0] for r in tx.rows("SELECT term FROM counts WHERE kind = 'c' AND n > 0")]
        lists = {c: self.posts("category", c, 0, 2**62) for c in names}
        return {c: posts for c, posts in lists.items() if posts}

    @property
    def tags(self) -> dict[str, list[Post]]:
        return {t: self.posts("tag", t, 0, 2**62) for t in self.tag_counts()}

    @property
    def duplicates(self) -> dict[str, str]:
        return dict(self.index.duplicates())


def _feed(kind: str, name: str) -> tuple[str, str]:
    """A feed's (kind, term) in the archive tables."""
    return archives.ALL if kind == "all" else (kind[0], name)


def _render(post: Post, body: str, site_url: str, summary_length: int) -> Rendered:
    try:
        return render_body(body, post.kind, post.url, post.excerpt, site_url, summary_length)
    except (ValueError, TypeError, RecursionError) as e:
        # Something no rule foresaw in a body: this entry goes out empty, the feed
        # does not fail (never a 500 because of content).
        log.warning("cannot render %s: %s: %s", post.rel, type(e).__name__, e)
        return Rendered(html="", summary="")


class _RenderCache:
    """Rendered bodies by post version and settings, bounded in count (what a
    worker keeps does not grow with the number of posts)."""

    def __init__(self, max_items: int = RENDERED_MAX) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[Any, ...], Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Rendered | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Rendered) -> Rendered:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return value


_RENDERED = _RenderCache()


# -- writing: the leader's side ---------------------------------------------------------
class _Writer:
    """Row changes inside one write transaction: posts, which post of an id is
    shown, which copy of a story the site-wide and tag feeds carry, their
    terms and counts, and the files' stats.

    A change touches the rows of its own id and story only (a few): never a
    query over every post (commit 0452a79: a first indexing went quadratic)."""

    def __init__(self, tx: Tx, show_once: bool = True,
                 ranks: Mapping[str, int] | None = None, slots: bool = True) -> None:
        self.tx, self.show_once, self.ranks = tx, show_once, ranks or {}
        # Archive slots as it goes: once the index is ready. A first indexing
        # makes them all at its end (archives.derive).
        self.slots = slots
        # Count changes of the batch, summed per (kind, term) and written once at
        # the end (flush): a batch of 500 posts touches a few dozen counts, not
        # thousands of upserts.
        self._counts: dict[tuple[str, str], int] = {}
        row = tx.one("SELECT value FROM meta WHERE key = 'generation'")
        # What archive slots changed in this transaction are stamped with: the
        # generation it ends with (_bump).
        self.stamp = int(row[0] if row else 0) + 1

    def flush(self) -> None:
        deltas = [(k, t, n) for (k, t), n in self._counts.items() if n]
        self._counts.clear()
        self.tx.many("INSERT INTO counts (kind, term, n) VALUES (?, ?, ?) ON CONFLICT (kind, term)"
                     " DO UPDATE SET n = counts.n + excluded.n", deltas)

    def apply(self, row: Row) -> None:
        self._remove(row.rel)
        tx = self.tx
        if row.stat is None:
            tx.run("DELETE FROM files WHERE rel = ?", [row.rel])
            return
        tx.run("INSERT INTO files (rel, mtime_ns, size, problem) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (rel) DO UPDATE SET mtime_ns = excluded.mtime_ns,"
               " size = excluded.size, problem = excluded.problem",
               [row.rel, row.stat[0], row.stat[1], row.problem])
        if row.post is not None and row.body is not None and row.record is not None:
            self._insert(row.post, row.record, row.body)

    def _insert(self, post: Post, record: bytes, body: bytes) -> None:
        tx, story = self.tx, story_key(post, self.show_once)
        owner = alone = None
        if post.published:
            owner = tx.one("SELECT record FROM posts WHERE guid = ? AND shown = 1", [post.guid])
            # The first post of its id and story (nearly every post): shown in every
            # feed it has, written so at once, without deciding its story again.
            alone = owner is None and tx.one("SELECT 1 FROM posts WHERE story = ? LIMIT 1",
                                             [story]) is None
        tx.run(
            "INSERT INTO posts (rel, guid, date_us, updated_us, modified_us, published, shown,"
            " cats, source_guid, story, lead, fronts, record, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [post.rel, post.guid, _us(post.date), _us(post.updated), _us(post.modified),
             int(post.published), int(post.published and owner is None),
             SEP.join(post.categories), post.source_guid, story, int(bool(alone)),
             _fronts_text(post.tags if alone else ()), record, body])
        if not post.published:
            return
        if owner is None:
            self._show(post, +1, flag=False)
            if alone:
                self._enfront(post, True, set(post.tags))
                return
        else:
            shown = _post(owner[0])
            if post.rel < shown.rel:       # the lexically first file of an id wins
                self._show(shown, -1)
                self._show(post, +1)
                self._restory(story_key(shown, self.show_once))
        self._restory(story)

    def _remove(self, rel: str) -> None:
        row = self.tx.one("SELECT record, shown, story, lead, fronts FROM posts WHERE rel = ?",
                          [rel])
        if row is None:
            return
        old = _post(row[0])
        self.tx.run("DELETE FROM posts WHERE rel = ?", [rel])
        self._unfront(old, bool(row[3]), json.loads(row[4]))
        if row[1]:
            self._show(old, -1, flag=False)
            # `+published`: the guid index, not one of the (published, …) ones,
            # which would walk every published post (6.5 s at a million).
            heir = self.tx.one("SELECT record FROM posts WHERE guid = ? AND +published = 1"
                               " ORDER BY rel LIMIT 1", [old.guid])
            if heir is not None:
                self._show(_post(heir[0]), +1)
                self._restory(story_key(_post(heir[0]), self.show_once))
        self._restory(row[2])

    def _show(self, post: Post, delta: int, flag: bool = True) -> None:
        """The post is (+1) or is no longer (-1) the one of its id that feeds
        carry: its category feeds. Which copy of its story the site-wide and
        tag feeds carry follows (_restory). flag=False: its row says so already
        (or is gone)."""
        if flag:
            self.tx.run("UPDATE posts SET shown = ? WHERE rel = ?", [int(delta > 0), post.rel])
        terms = [("c", c) for c in post.categories]
        self._count([*terms, SHOWN], delta)
        self._place(post, terms, terms, delta)

    def _place(self, post: Post, terms: list[tuple[str, str]], feeds: list[tuple[str, str]],
               delta: int) -> None:
        """The post enters (+1) or leaves (-1) the feeds of `terms` (rows of the
        terms table) and the archives of `feeds`."""
        tx, date = self.tx, _us(post.date)
        if delta > 0:
            tx.many("INSERT INTO terms (kind, term, date_us, guid, rel) VALUES (?, ?, ?, ?, ?)",
                    [(k, t, date, post.guid, post.rel) for k, t in terms])
            if self.slots:
                archives.show(tx, feeds, post.guid, post.rel, date, self.stamp)
        else:
            tx.many("DELETE FROM terms WHERE kind = ? AND term = ? AND date_us = ? AND guid = ?",
                    [(k, t, date, post.guid) for k, t in terms])
            if self.slots:
                archives.hide(tx, feeds, post.guid, self.stamp)

    def _count(self, terms: Iterable[tuple[str, str]], delta: int) -> None:
        counts = self._counts
        for term in terms:
            counts[term] = counts.get(term, 0) + delta

    # -- one copy of each story in the site-wide and tag feeds ---------------------------
    def _restory(self, story: str) -> None:
        """Decide again which shown copy of `story` the site-wide feed and each
        tag's feed carry, from the story's own rows, and move what changed."""
        copies = [(_post(r[0]), bool(r[1]), bool(r[2]), frozenset(json.loads(r[3])))
                  for r in self.tx.rows("SELECT record, shown, lead, fronts FROM posts"
                                        " WHERE story = ?", [story])]
        want = self._fronts([p for p, shown, _, _ in copies if shown])
        moves = [(p, lead, tags, *want.get(p.rel, (False, frozenset())))
                 for p, _, lead, tags in copies]
        # A copy that stays shown lists other copies now: the archives that hold
        # it are stamped, so that the export renders them again (archives.fingerprints).
        for post, lead, tags, new_lead, new_tags in moves:
            stays = [*([archives.ALL] if lead and new_lead else []),
                     *[("t", t) for t in sorted(tags & new_tags)]]
            if stays and self.slots:
                archives.show(self.tx, stays, post.guid, post.rel, _us(post.date), self.stamp)
        moves = [m for m in moves if m[1:3] != m[3:5]]
        # Every removal before any addition: a copy of the same id and date may be
        # leaving the terms the new one enters.
        for post, lead, tags, new_lead, new_tags in moves:
            self._unfront(post, lead and not new_lead, tags - new_tags)
        for post, lead, tags, new_lead, new_tags in moves:
            self._enfront(post, new_lead and not lead, new_tags - tags)
            self.tx.run("UPDATE posts SET lead = ?, fronts = ? WHERE rel = ?",
                        [int(new_lead), _fronts_text(new_tags), post.rel])

    def _fronts(self, shown: list[Post]) -> dict[str, tuple[bool, frozenset[str]]]:
        """Per shown copy: whether the site-wide feed carries it, and which tags'
        feeds do. Each carries the first copy in story_order among those it
        would have; copies that are not a story (no reprint among them) each."""
        if not _grouped(shown):
            return {p.rel: (True, frozenset(p.tags)) for p in shown}
        ordered = sorted(shown, key=lambda p: story_order(p, self.ranks))
        tags: dict[str, set[str]] = {p.rel: set() for p in ordered}
        for tag in {t for p in ordered for t in p.tags}:
            tags[next(p for p in ordered if tag in p.tags).rel].add(tag)
        return {p.rel: (p is ordered[0], frozenset(tags[p.rel])) for p in ordered}

    def _enfront(self, post: Post, lead: bool, tags: Iterable[str]) -> None:
        self._front(post, lead, sorted(tags), +1)

    def _unfront(self, post: Post, lead: bool, tags: Iterable[str]) -> None:
        self._front(post, lead, sorted(tags), -1)

    def _front(self, post: Post, lead: bool, tags: list[str], delta: int) -> None:
        terms = [("t", t) for t in tags]
        feeds = [*terms, *([archives.ALL] if lead else [])]
        self._count([*feeds, *([("s", SEP.join(post.categories))] if lead else [])], delta)
        self._place(post, terms, feeds, delta)


def _grouped(copies: list[Post]) -> bool:
    """Whether these posts of one story key are copies of one story: more than
    one, and a reprint among them (two sources whose items merely share an
    upstream id, with no reprint, are two stories)."""
    return len(copies) > 1 and any(p.story for p in copies)


def _fronts_text(tags: Iterable[str]) -> str:
    return json.dumps(sorted(tags), ensure_ascii=False)


class Index:
    def __init__(self, config: Config, clock: Clock = utcnow, db: Database | None = None) -> None:
        self.config, self.clock = config, clock
        self.db = db or open_database(config)
        self._writing = threading.RLock()
        self._scanning = threading.Lock()     # one whole scan at a time
        self.progress: tuple[int, int] | None = None   # (read, to read) while indexing
        # An index of this process's own (state_dir unusable): no leader writes it
        # but this process.
        self.private = bool(getattr(self.db, "private", False))
        # The last error, in the one record of what is failing (health.py): the
        # leader writes the index, any worker answers /status and /readyz. Keyed
        # by the database: a worker's private one (state_dir unusable at its
        # start) is another place, whose success clears nothing of the shared.
        where = getattr(self.db, "path", None) or json.dumps(self.db.describe(), sort_keys=True)
        self._error_key = f"index {config.path} {where}"
        # Write transactions committed by this process: a version remembered for a
        # moment (replay.py) is not reused across one of this process's own writes.
        self.writes = 0

    @property
    def last_error(self) -> str | None:
        """The last error of a scan or update (None once one works again)."""
        return health.STATE.error(self._error_key)

    @last_error.setter
    def last_error(self, error: str | None) -> None:
        health.STATE.set_error(self._error_key, error)

    # -- versions -------------------------------------------------------------
    def views(self) -> Views:
        """A snapshot of the current version (raises IndexUnavailable)."""
        now = self.clock()
        with self.db.read() as tx:
            row = tx.one(
                "SELECT (SELECT value FROM meta WHERE key = 'generation'),"
                " (SELECT value FROM meta WHERE key = 'ready'),"
                # The newest date that has come: a future post coming due is a new version.
                " (SELECT max(date_us) FROM posts WHERE published = 1 AND date_us <= ?)",
                [_us(now)])
        assert row is not None
        return Views(self, int(row[0] or 0), row[1] == "1", int(row[2] or 0), now)

    @property
    def generation(self) -> int:
        return self.views().generation

    @property
    def damaged(self) -> bool:
        """Whether a read or write found the database spoilt: a scan rebuilds it."""
        return self.db.damage is not None

    @property
    def ready(self) -> bool:
        """Whether a first indexing has been completed (feeds are whole)."""
        return self.views().ready

    # -- updating ----------------------------------------------------------------
    def scan(self) -> set[str]:
        """Bring the index up to date with the disk; return the changed paths.
        The end of a whole scan makes the index ready. A database found corrupt
        on the way is set aside and the posts indexed again."""
        try:
            if self.db.damage is not None:
                # A read of this process found it spoilt; this scan's own reads may
                # come from pages its connections hold and not see it.
                raise IndexUnavailable(self.db.damage, corrupt=True)
            return self._scan()
        except IndexUnavailable as e:
            if not e.corrupt:
                raise
            log.error("the index is corrupt (%s): indexing every post again", e)
            self.last_error = str(e)
            self.db.rebuild()
            return self._scan()

    def _scan(self) -> set[str]:
        # The comparison of stats (tens of seconds at a million posts) only reads:
        # an update() of the paths a change named goes on meanwhile, so that a change
        # made during the catch-up after a start is not held up by it. Reading a path
        # twice is harmless (it reads what is on disk), and a path the comparison
        # calls gone is looked at again before it is removed (it may be new since).
        with self._scanning, _Scratch() as scratch:
            with self._writing:
                if not self.views().ready:
                    archives.adopt(self.db)
                self._retie()
            total = self._diff(scratch)
            with self._writing:
                changed = self._read_and_apply(scratch.todo(), total, "indexing posts")
                self._finish_archives()
                self._set_meta("ready", "1")
            return changed

    def _finish_archives(self) -> None:
        """Number the posts a first indexing found (oldest first), after repairing
        numbers that cannot be ours; what was repaired is kept for /status."""
        with self.db.write() as tx:
            if not _is_ready(tx):
                row = tx.one("SELECT value FROM meta WHERE key = 'generation'")
                archives.derive(tx, int(row[0] if row else 0) + 1)
            repaired = archives.check(tx)
            if archives.number(tx) or repaired:
                _bump(tx)
            if repaired:
                when = dt.datetime.fromtimestamp(self.clock().timestamp(), dt.UTC)
                tx.run("INSERT INTO meta (key, value) VALUES ('archives_repaired', ?)"
                       " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       [f"{when.isoformat()}: " + "; ".join(repaired)])

    def update(self, rels: Iterable[str], inside: Collection[str] = ()) -> set[str]:
        """Re-read the given paths (relative to posts_dir) if they changed."""
        rels = sorted(set(rels))
        with self._writing:
            self._retie()
            if not rels:
                return set()
            stored = self._stored(rels)
            todo: list[tuple[str, bool]] = []
            gone: list[Row] = []
            for rel in rels:
                try:
                    st = (self.config.posts_dir / rel).stat()
                except OSError:
                    if rel in stored:
                        gone.append(Row(rel, None))
                    continue
                if stored.get(rel) != (st.st_mtime_ns, st.st_size) or rel not in stored:
                    todo.append((rel, rel in inside))
            changed = self._apply(gone)
            items: Iterator[tuple[str, bool | None]] = iter(todo)
            return changed | self._read_and_apply(items, len(todo), "reading posts")

    def restore(self) -> set[str]:
        """Catch up with posts_dir (the saved index is the database itself)."""
        return self.scan()

    def load_state(self) -> bool:
        """Whether an index is there to start from (kept for callers of the old API)."""
        return self.ready

    def save_state(self) -> None:
        """Nothing to do: every change is committed when it is made."""

    def known(self, rels: Iterable[str]) -> set[str]:
        """Which of `rels` the index has read (a post or a problem), by key lookups."""
        return set(self._stored(sorted(set(rels))))

    def _stored(self, rels: list[str]) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        with self.db.read() as tx:
            for i in range(0, len(rels), BATCH):
                part = rels[i:i + BATCH]
                for rel, mtime, size in tx.rows(
                        "SELECT rel, mtime_ns, size FROM files WHERE rel IN ("
                        + ",".join("?" * len(part)) + ")", part):
                    out[rel] = (mtime, size)
        return out

    def _diff(self, scratch: _Scratch) -> int:
        """Fill scratch.todo with the paths whose stats changed, appeared or went;
        return how many. Both sides are read in path order and merged."""
        scratch.fill_seen(iter_post_stats(self.config.posts_dir, self.config.markdown_ext,
                                          self.config.skip_dirs, self.config.jekyll_reading))
        with self.db.read() as tx:
            stored = tx.iterate("SELECT rel, mtime_ns, size FROM files ORDER BY rel"
                                + self.db.binary_order)
            return scratch.merge(stored)

    def _read_and_apply(self, todo: Iterator[tuple[str, bool | None]], total: int,
                        what: str) -> set[str]:
        """Read the paths of `todo` ((rel, inside), inside None: gone) and write
        what they hold, a batch per transaction; return the changed paths (at
        most MAX_REPORTED of them: a first indexing logs how many)."""
        changed: set[str] = set()
        if not total:
            return changed
        gone: list[Row] = []

        def reading() -> Iterator[tuple[str, bool]]:
            for rel, inside in todo:
                if inside is None and os.path.lexists(self.config.posts_dir / rel):
                    yield rel, False          # there after all: written since the comparison
                elif inside is None:
                    gone.append(Row(rel, None))
                    if len(gone) >= BATCH:
                        self._report(changed, self._apply(gone))
                        gone.clear()
                else:
                    yield rel, inside

        progress = Progress(total, what)
        self.progress = (0, total)
        pending: list[Row] = []

        def write() -> None:
            meta = {"progress": f"{progress.done}/{total}"} if total > BATCH else {}
            self._report(changed, self._apply(pending, meta))
            pending.clear()
            self.progress = (progress.done, total)

        try:
            for batch in read_rows(self.config, reading(), total, progress):
                pending.extend(batch)
                # Reads come in chunks of a few hundred; a transaction per
                # WRITE_BATCH rows (a commit, a WAL check) is what the single
                # writer of a first indexing pays for.
                if len(pending) >= WRITE_BATCH:
                    write()
            if pending:
                write()
            self._report(changed, self._apply(gone))
        finally:
            progress.close()
            self.progress = None
        if total > MAX_REPORTED:
            log.info("%s: %d files read or removed", what, total)
        return changed

    @staticmethod
    def _report(changed: set[str], rels: set[str]) -> None:
        for rel in rels:
            if len(changed) >= MAX_REPORTED:
                return
            changed.add(rel)

    def _apply(self, rows: list[Row], meta: Mapping[str, str] | None = None) -> set[str]:
        """Write the rows in one transaction, with `meta` (key → value) in it."""
        if not rows:
            return set()
        with self.db.write() as tx:
            for key, value in (meta or {}).items():
                tx.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                       " DO UPDATE SET value = excluded.value", [key, value])
            ready = _is_ready(tx)
            writer = _Writer(tx, self.config.near_duplicates.show_once,
                             story_ranks(self.config), slots=ready)
            for row in rows:
                writer.apply(row)
                if row.problem:
                    log.warning("skipped post %s: %s", row.rel, row.problem)
            writer.flush()
            # New posts take the next archive numbers, in arrival order; a first
            # indexing numbers all it found at its end, by date (_finish_archives).
            if ready:
                archives.number(tx)
            _bump(tx)
        self.writes += 1
        return {row.rel for row in rows}

    def _retie(self) -> None:
        """Ties between copies of one date go by the config order of categories:
        once that order changed (a reloaded config), decide again the stories
        that have a tie. One query over the shown posts per change of the
        order, never per change of a post."""
        order = json.dumps(list(self.config.categories), ensure_ascii=False)
        with self.db.read() as tx:
            row = tx.one("SELECT value FROM meta WHERE key = 'story_order'")
        if row is not None and row[0] == order:
            return
        with self.db.write() as tx:
            tied = sorted({r[0] for r in tx.rows(
                "SELECT story FROM posts WHERE story >= 's:' AND story < 's;' AND shown = 1"
                " GROUP BY story, date_us HAVING count(*) > 1")})   # ';' follows ':'
            ready = _is_ready(tx)
            writer = _Writer(tx, self.config.near_duplicates.show_once,
                             story_ranks(self.config), slots=ready)
            for story in tied:
                writer._restory(story)
            writer.flush()
            tx.run("INSERT INTO meta (key, value) VALUES ('story_order', ?) ON CONFLICT (key)"
                   " DO UPDATE SET value = excluded.value", [order])
            if tied:
                if ready:
                    archives.number(tx)
                _bump(tx)
                log.info("categories reordered: %d stories with copies of one date decided"
                         " again", len(tied))
        self.writes += 1

    def _set_meta(self, key: str, value: str) -> None:
        with self.db.write() as tx:
            old = tx.one("SELECT value FROM meta WHERE key = ?", [key])
            if old is not None and old[0] == value:
                return
            tx.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                   " DO UPDATE SET value = excluded.value", [key, value])
            if key == "ready":
                _bump(tx)
        self.writes += 1

    # -- what the rest of feedsvc asks -----------------------------------------------
    @property
    def posts(self) -> Mapping[str, Post]:
        """Every post by path (tools and tests: a query per use, nothing held)."""
        return _Posts(self)

    @property
    def problems(self) -> dict[str, str]:
        """The files that are not usable posts, with the reason (a copy)."""
        with self.db.read() as tx:
            return dict(tx.rows("SELECT rel, problem FROM files WHERE problem IS NOT NULL"
                                " ORDER BY rel"))

    def duplicates(self) -> list[tuple[str, str]]:
        with self.db.read() as tx:
            rows = tx.rows("SELECT p.rel, o.rel, p.guid FROM posts p JOIN posts o"
                           " ON o.guid = p.guid AND o.shown = 1"
                           " WHERE +p.published = 1 AND p.shown = 0")   # posts_shown
        return [(rel, f"same id as {owner} ({guid}); skipped") for rel, owner, guid in rows]

    def problem_list(self) -> list[tuple[str, str]]:
        return sorted([*self.problems.items(), *self.duplicates()])

    def source_guids(self) -> dict[str, set[str]]:
        """The upstream ids already stored as posts, per category."""
        known: dict[str, set[str]] = {}
        with self.db.read() as tx:
            rows = tx.rows("SELECT source_guid, cats FROM posts WHERE source_guid IS NOT NULL")
        for guid, cats in rows:
            for slug in cats.split(SEP) if cats else ():
                known.setdefault(slug, set()).add(guid)
        return known

    def knows_under(self, folder: str) -> bool:
        """Whether any indexed file lies under the folder `folder` (relative)."""
        prefix = folder.rstrip("/") + "/"
        with self.db.read() as tx:
            row = tx.one("SELECT 1 FROM files WHERE rel >= ? AND rel < ? LIMIT 1",
                         [prefix, prefix[:-1] + "0"])   # '0' follows '/'
        return row is not None

    def describe(self) -> dict[str, object]:
        """For /status: the database, readiness, generation and the last error."""
        info: dict[str, object] = {**self.db.describe(), "last_error": self.last_error}
        damage = self.db.damage
        if damage is not None:
            # Found spoilt by a read of this process: not ready until rebuilt, whatever
            # the reads that the pages a connection holds still answer.
            info.update(ready=False, error=damage)
            return info
        try:
            views = self.views()
            info.update(ready=views.ready, generation=views.generation)
            with self.db.read() as tx:
                row = tx.one("SELECT value FROM meta WHERE key = 'progress'")
                repaired = tx.one("SELECT value FROM meta WHERE key = 'archives_repaired'")
            if not views.ready and row:
                info["progress"] = row[0]
            if repaired:
                info["archives_repaired"] = repaired[0]
        except IndexUnavailable as e:
            info.update(ready=False, error=str(e))
        return info

    def close(self) -> None:
        self.db.close()


def _is_ready(tx: Tx) -> bool:
    row = tx.one("SELECT value FROM meta WHERE key = 'ready'")
    return row is not None and row[0] == "1"


def _bump(tx: Tx) -> None:
    tx.run("INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT (key)"
           " DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)")


class _Posts(Mapping[str, Post]):
    def __init__(self, index: Index) -> None:
        self.index = index

    def __getitem__(self, rel: str) -> Post:
        with self.index.db.read() as tx:
            row = tx.one("SELECT record FROM posts WHERE rel = ?", [rel])
        if row is None:
            raise KeyError(rel)
        return _post(row[0])

    def __iter__(self) -> Iterator[str]:
        with self.index.db.read() as tx:
            return iter([r[0] for r in tx.rows("SELECT rel FROM posts ORDER BY rel")])

    def __len__(self) -> int:
        with self.index.db.read() as tx:
            row = tx.one("SELECT count(*) FROM posts")
        return int(row[0]) if row else 0

    def values(self) -> Any:
        with self.index.db.read() as tx:
            return [_post(r[0]) for r in tx.rows("SELECT record FROM posts ORDER BY rel")]


class _Scratch:
    """A private temporary SQLite file for one rescan: the stats found on disk
    and the paths to read again, so that memory stays flat whatever the count."""

    def __enter__(self) -> _Scratch:
        self.conn = sqlite3.connect("", isolation_level=None)   # "": a temporary file
        self.conn.execute("CREATE TABLE seen (rel TEXT PRIMARY KEY, mtime_ns INTEGER,"
                          " size INTEGER, link INTEGER)")
        self.conn.execute("CREATE TABLE todo (n INTEGER PRIMARY KEY, rel TEXT, inside INTEGER)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def fill_seen(self, stats: Iterator[tuple[str, tuple[int, int] | None]]) -> None:
        self.conn.execute("BEGIN")
        batch: list[tuple[str, int, int, int]] = []
        for rel, st in stats:
            batch.append((rel, *(st or (0, 0)), int(st is None)))
            if len(batch) >= 5000:
                self.conn.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)", batch)
                batch = []
        self.conn.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)", batch)
        self.conn.execute("COMMIT")

    def merge(self, stored: Iterator[tuple[Any, ...]]) -> int:
        """Merge the stored stats (in path order) with those seen; return the todo count."""
        seen = self.conn.execute("SELECT rel, mtime_ns, size, link FROM seen ORDER BY rel")
        out: list[tuple[str, int | None]] = []
        total = 0
        a, b = next(stored, None), seen.fetchone()
        while a is not None or b is not None:
            if b is not None and (a is None or b[0] < a[0]):
                out.append((b[0], int(not b[3])))      # new: a regular file is inside
                b = seen.fetchone()
            elif a is not None and (b is None or a[0] < b[0]):
                out.append((a[0], None))               # gone
                a = next(stored, None)
            else:
                assert a is not None and b is not None
                if b[3] or (a[1], a[2]) != (b[1], b[2]):
                    out.append((b[0], int(not b[3])))
                a, b = next(stored, None), seen.fetchone()
            if len(out) >= 5000:
                total += self._keep(out)
        total += self._keep(out)
        return total

    def _keep(self, out: list[tuple[str, int | None]]) -> int:
        self.conn.executemany("INSERT INTO todo (rel, inside) VALUES (?, ?)", out)
        n = len(out)
        out.clear()
        return n

    def todo(self) -> Iterator[tuple[str, bool | None]]:
        for rel, inside in self.conn.execute("SELECT rel, inside FROM todo ORDER BY n"):
            yield rel, None if inside is None else bool(inside)
