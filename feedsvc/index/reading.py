"""Reading post files into index rows: the record, the problem, and the body
read with it, so that serving never opens a post file and a document is made
from exactly the version that was selected (the body is rendered when a feed
first needs it: most posts of a large archive never appear in one).

A first indexing of many files reads them in a pool of processes, one per
core (`spawn`, never `fork`: the caller is a threaded server worker).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

from feedsvc.config import Config
from feedsvc.errors import PostError
from feedsvc.index.files import Stat, is_post_path
from feedsvc.index.records import pack_body, pack_post
from feedsvc.posts import Post, read_post_text

log = logging.getLogger(__name__)
PARALLEL_FROM = 2000      # files to read before a pool pays for its start (~1 s)
CHUNK = 200               # files per pool task


@dataclass(frozen=True, slots=True)
class Row:
    """What the index keeps for one path. `stat` None: the path is not (or no
    longer) a post file, and whatever the index had for it goes. A post comes
    with its record and body already packed (records.py) by whoever read it."""
    rel: str
    stat: Stat | None
    post: Post | None = None
    problem: str | None = None
    body: bytes | None = None          # records.pack_body
    record: bytes | None = None        # records.pack_post


def read_row(config: Config, rel: str, inside: bool = False) -> Row:
    posts_dir = config.posts_dir
    path = posts_dir / rel
    try:
        st = path.stat()
    except OSError:
        return Row(rel, None)
    if not (is_post_path(rel, posts_dir, config.markdown_ext, config.skip_dirs,
                         config.jekyll_reading) and path.is_file()
            and (inside or _inside(path, posts_dir))):
        return Row(rel, None)
    try:
        post, body = read_post_text(posts_dir, rel, config)
    except PostError as e:
        return Row(rel, (st.st_mtime_ns, st.st_size), problem=e.reason)
    return Row(rel, (post.mtime_ns, post.size), post, None, pack_body(body), pack_post(post))


def _inside(path: Path, posts_dir: Path) -> bool:
    # A symlink may point anywhere; only files really inside posts_dir count.
    return path.resolve().is_relative_to(posts_dir.resolve())


def read_rows(config: Config, rels: Iterator[tuple[str, bool]], total: int,
              progress: Callable[[int], None] | None = None) -> Iterator[list[Row]]:
    """Rows of (rel, inside) pairs, in batches, in the order given; in a process
    pool when there are many. At most a few batches are in flight, so a million
    paths never sit in memory at once."""
    chunks = _chunks(rels)
    if total < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        for chunk in chunks:
            batch = [read_row(config, rel, inside) for rel, inside in chunk]
            if progress:
                progress(len(batch))
            yield batch
        return
    ctx = multiprocessing.get_context("spawn")
    procs = os.cpu_count() or 2
    with _main_not_imported():
        pool = ctx.Pool(procs, initializer=_init, initargs=(config,))
    with pool:
        flight: deque[AsyncResult[list[Row]]] = deque()
        for chunk in chunks:
            flight.append(pool.apply_async(_read_chunk, (chunk,)))
            if len(flight) >= 3 * procs:
                yield _done(flight.popleft(), progress)
        while flight:
            yield _done(flight.popleft(), progress)


@contextmanager
def _main_not_imported() -> Iterator[None]:
    """Spawned readers need feedsvc, not the program that started them: `spawn`
    would import the main module again (gunicorn, a test runner, a script),
    which at best costs a second and at worst starts it again."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__spec__", "__file__")
                             if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _chunks(rels: Iterator[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    chunk: list[tuple[str, bool]] = []
    for item in rels:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _done(result: AsyncResult[list[Row]], progress: Callable[[int], None] | None) -> list[Row]:
    batch = result.get()
    if progress:
        progress(len(batch))
    return batch


_config: Config | None = None


def _init(config: Config) -> None:
    global _config
    _config = config
    logging.basicConfig(level=logging.WARNING)


def _read_chunk(rels: Iterable[tuple[str, bool]]) -> list[Row]:
    assert _config is not None
    return [read_row(_config, rel, inside) for rel, inside in rels]


class Progress:
    """Counts read files; a tqdm bar when stderr is a terminal, else a log line
    every 10 %."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.done, self.what = total, 0, what
        self._bar = None
        self._logged = 0
        if total and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit=" posts", unit_scale=True,
                             file=sys.stderr)

    def __call__(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.total >= PARALLEL_FROM and self.done * 10 // self.total > self._logged:
            self._logged = self.done * 10 // self.total
            log.info("%s: %d of %d files", self.what, self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
