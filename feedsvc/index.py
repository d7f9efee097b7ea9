"""The post index: every post under posts_dir, the problems found, and the
views the feeds are cut from (per category, per tag, all).

A rescan only re-reads files whose (mtime, size) changed; the watcher
(watch.py) hands over just the paths that changed. Views are rebuilt when the
set of posts changes or when a future-dated post's time comes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import pickle
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from feedsvc import atomic, dates, health
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.errors import PostError
from feedsvc.posts import Post, post_kind, read_post

log = logging.getLogger(__name__)
INDEX_FORMAT = 4   # bump when post reading rules change: saved Post records go stale
STATE_CHUNK = 5000
_POST_FIELDS = tuple(f.name for f in fields(Post))
_POST_VALUES = attrgetter(*_POST_FIELDS)



def is_post_path(rel: str, posts_dir: Path) -> bool:
    """Jekyll's rule for a relative path: a post file inside a `_posts` folder
    (any file when posts_dir is one), nothing hidden on the way."""
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts) or not post_kind(parts[-1]):
        return False
    return posts_dir.name == "_posts" or "_posts" in parts[:-1]


def iter_post_files(posts_dir: Path) -> Iterator[str]:
    """Relative paths of the post files, sorted, as Jekyll finds them: files
    inside `_posts` folders at any depth (every file when posts_dir is one),
    hidden files and folders skipped."""
    return iter(sorted(stat_post_files(posts_dir)))


def stat_post_files(posts_dir: Path) -> dict[str, tuple[int, int] | None]:
    """The post files (Jekyll's rule, see iter_post_files) with their (mtime_ns, size), taken from the
    directory scan itself: a rescan of an unchanged tree costs one stat per file
    and nothing else. A symlink maps to None: only resolving it says if it counts."""
    found: dict[str, tuple[int, int] | None] = {}
    folders = [(str(posts_dir), "", posts_dir.name == "_posts")]
    while folders:
        folder, rel_dir, in_posts = folders.pop()
        try:
            # Iterated, not listed: 100,000 DirEntry objects at once weigh 75 MB.
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folders.append((entry.path, rel_dir + name + "/",
                                        in_posts or name == "_posts"))
                    elif in_posts and post_kind(name):
                        st = None if entry.is_symlink() else entry.stat(follow_symlinks=False)
                        found[rel_dir + name] = st and (st.st_mtime_ns, st.st_size)
        except OSError:
            continue  # a folder removed while scanning: its files are gone
    return found


@dataclass(frozen=True)
class Views:
    """What the feeds are cut from, valid until `expires` (a future post's time)."""
    categories: dict[str, list[Post]]
    tags: dict[str, list[Post]]
    all: list[Post]
    newest_updated: dt.datetime
    expires: dt.datetime | None
    duplicates: dict[str, str] = field(default_factory=dict)
    _in_any: dict[frozenset[str], list[Post]] = field(default_factory=dict, compare=False,
                                                      repr=False)

    def in_any(self, categories: frozenset[str]) -> list[Post]:
        """The posts in any of `categories` (the site-wide feed), worked out once
        per views: every page of /feeds/all filtered every post again."""
        posts = self._in_any.get(categories)
        if posts is None:
            posts = [p for p in self.all if not categories.isdisjoint(p.categories)]
            self._in_any[categories] = posts
        return posts


class Index:
    def __init__(self, config: Config, clock: Clock = utcnow) -> None:
        self.config, self.clock = config, clock
        self.posts: dict[str, Post] = {}
        self.problems: dict[str, str] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        self._lock = threading.RLock()
        self._views: Views | None = None
        self.generation = 0

    # -- reading ---------------------------------------------------------
    def scan(self) -> set[str]:
        """Bring the index up to date with the disk; return the changed paths."""
        found = stat_post_files(self.config.posts_dir)
        with self._lock:
            seen = self._seen
            todo = {rel for rel, key in found.items() if key is None or seen.get(rel) != key}
            todo |= seen.keys() - found.keys()
        # A regular file reached without following a symlink lies inside posts_dir.
        return self.update(todo, inside={rel for rel in todo if found.get(rel) is not None})

    def update(self, rels: Iterable[str], inside: Collection[str] = ()) -> set[str]:
        """Re-read the given paths (relative to posts_dir) if they changed."""
        changed = set()
        for rel in rels:
            if self._refresh(rel, rel in inside):
                changed.add(rel)
        if changed:
            with self._lock:
                self._views = None
                self.generation += 1
            self.views()  # rebuilt now, by the watcher, rather than by the next request
        return changed

    def _refresh(self, rel: str, inside: bool = False) -> bool:
        path = self.config.posts_dir / rel
        try:
            st = path.stat()
        except OSError:
            return self._forget(rel)
        if not (is_post_path(rel, self.config.posts_dir) and path.is_file()
                and (inside or self._inside(path))):
            return self._forget(rel)
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._seen.get(rel) == key:
                return False
        try:
            post: Post | None = read_post(self.config.posts_dir, rel, self.config)
            problem = None
        except PostError as e:
            post, problem = None, e.reason
            log.warning("skipped post %s: %s", rel, e.reason)
        with self._lock:
            self._seen[rel] = key
            self._set(rel, post, problem)
        return True

    def _inside(self, path: Path) -> bool:
        # A symlink may point anywhere; only files really inside posts_dir count.
        root = self.config.posts_dir.resolve()
        return path.resolve().is_relative_to(root)

    def _set(self, rel: str, post: Post | None, problem: str | None) -> None:
        self.posts.pop(rel, None)
        self.problems.pop(rel, None)
        if post is not None:
            self.posts[rel] = post
        if problem is not None:
            self.problems[rel] = problem

    def _forget(self, rel: str) -> bool:
        with self._lock:
            known = rel in self._seen
            self._seen.pop(rel, None)
            self._set(rel, None, None)
        return known

    # -- persisted index --------------------------------------------------
    def _state_file(self) -> Path:
        c = self.config
        key = repr((INDEX_FORMAT, _POST_FIELDS, str(c.posts_dir), c.site.url, c.site.timezone, c.permalink,
                    sorted((s, cat.timezone) for s, cat in c.categories.items())))
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return c.state_dir / f"index-{digest}.pickle"

    def restore(self) -> set[str]:
        """Saved index + rescan + save, one process at a time: of several workers
        starting together, the first reads the posts and saves the index, and the
        others wait for it and then only load it and compare stats."""
        with _exclusive(self._lock_file()):
            self.load_state()
            changed = self.scan()
            if changed or not self._state_file().exists():
                self._write_state()
        return changed

    def _lock_file(self) -> Path:
        return self._state_file().with_suffix(".lock")

    def load_state(self) -> bool:
        """Start from the index saved by an earlier run (only unchanged files are trusted)."""
        seen: dict[str, tuple[int, int]] = {}
        posts: dict[str, Post] = {}
        problems: dict[str, str] = {}
        try:
            with open(self._state_file(), "rb") as fh:
                while (rows := pickle.load(fh)) is not None:  # noqa: S301 - our own state_dir
                    for rel, key, post, problem in rows:
                        seen[rel] = key
                        if post is not None:
                            posts[rel] = post
                        if problem is not None:
                            problems[rel] = problem
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                AttributeError):
            return False
        with self._lock:
            self._seen, self.posts, self.problems = seen, posts, problems
        return True

    def save_state(self) -> None:
        """Save the index for the next start, unless another process is saving or
        restoring it right now: any saved index is safe to start from, since only
        files whose stats still match are trusted, so one writer is enough."""
        with _exclusive(self._lock_file(), wait=False) as mine:
            if mine:
                self._write_state()

    def _write_state(self) -> None:
        target = self._state_file()
        try:
            with self._lock:
                rows = [(rel, key, self.posts.get(rel), self.problems.get(rel))
                        for rel, key in self._seen.items()]
            with atomic.replacing(target) as fh:
                # Pickled in chunks: one pickle of everything keeps a memo entry per
                # object, 80 MB at 100,000 posts. None marks a complete file.
                for i in range(0, len(rows), STATE_CHUNK):
                    _StatePickler(fh, pickle.HIGHEST_PROTOCOL).dump(rows[i:i + STATE_CHUNK])
                pickle.dump(None, fh)
        except OSError as e:
            # The index is a cache of the posts (rebuilt from them at start): the
            # service goes on, and /status says the save fails.
            health.STATE.failed(target, health.reason(e), what="save the index")
        else:
            health.STATE.ok(target)

    # -- views ------------------------------------------------------------
    def views(self) -> Views:
        now = self.clock()
        with self._lock:
            v = self._views
            if v is None or (v.expires is not None and now >= v.expires):
                if v is not None:
                    self.generation += 1
                v = self._views = build_views(self.posts.values(), now)
            return v

    def problem_list(self) -> list[tuple[str, str]]:
        with self._lock:
            items = dict(self.problems)
        items.update(self.views().duplicates)
        return sorted(items.items())


class _StatePickler(pickle.Pickler):
    """Posts pickled as their field values and rebuilt by Post(*values): twice as
    fast both ways as a slots dataclass's own __getstate__/__setstate__."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Post:
            return Post, _POST_VALUES(obj)
        return NotImplemented


@contextmanager
def _exclusive(lock_path: Path, wait: bool = True) -> Iterator[bool]:
    """An flock held while the body runs; yields whether it is held. Without a
    writable state_dir there is nothing to share: the body runs, unlocked."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+b")  # noqa: SIM115 - closed below, after the body
    except OSError:
        yield True
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        yield False
        return
    try:
        yield True
    finally:
        fh.close()


def build_views(posts: Iterable[Post], now: dt.datetime) -> Views:
    visible: list[Post] = []
    expires: dt.datetime | None = None
    newest = dates.EPOCH
    for post in posts:
        if not post.published:
            continue
        if post.date > now:
            expires = post.date if expires is None else min(expires, post.date)
            continue
        visible.append(post)
        newest = max(newest, post.updated)
    # Newest first, ties by ascending id, by stable passes on single keys: tuple keys made this
    # sort most of a view rebuild (1 s of CPU at 100,000 posts).
    visible.sort(key=_PATH)
    unique, duplicates = _unique(visible)
    unique.sort(key=_ID)
    unique.sort(key=lambda p: -p.date.timestamp())
    cats: dict[str, list[Post]] = {}
    tags: dict[str, list[Post]] = {}
    for post in unique:
        for c in post.categories:
            cats.setdefault(c, []).append(post)
        for t in post.tags:
            tags.setdefault(t, []).append(post)
    return Views(cats, tags, unique, newest, expires, duplicates)


_PATH, _ID = attrgetter("rel"), attrgetter("guid")


def _unique(posts: list[Post]) -> tuple[list[Post], dict[str, str]]:
    """One post per id: a second file with the same permalink or guid would be a
    duplicate entry in every reader; the lexically first file wins (`posts` is
    sorted by path)."""
    owner: dict[str, Post] = {}
    for post in posts:
        owner.setdefault(post.guid, post)
    if len(owner) == len(posts):
        return list(posts), {}
    duplicates = {p.rel: f"same id as {owner[p.guid].rel} ({p.guid}); skipped"
                  for p in posts if owner[p.guid] is not p}
    return [p for p in posts if owner[p.guid] is p], duplicates
