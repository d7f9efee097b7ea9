"""`feedsvc build`: every document the service answers, written at the path
of its URL, from the same FeedService, hence byte-identical.

Incremental: a manifest of the previous build into the same folder (in
state_dir/builds/, named by a hash of the folder's absolute path, so that
the folder holds exactly what is served) records, per file it wrote, the
document's store key (which changes exactly when its bytes may:
service.digest), the SHA-256 of its bytes, and its size and modification
time. A document whose key and file are as recorded is
neither rendered nor written; one whose new bytes equal the file's is not
written; files of the previous build that this one no longer produces are
removed. A file the manifest does not name is the user's own: never removed,
never replaced. Each file is replaced by an atomic rename (atomic.py), so a
web server serving the folder sees the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from feedsvc import atomic
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.errors import NotFound
from feedsvc.feeds import FeedKey, archive_size, jekyll_keys, url_tags
from feedsvc.model import FORMATS
from feedsvc.opml import PATH as OPML_PATH
from feedsvc.pages import Pages, tag_list_path, tag_pages
from feedsvc.service import FeedService
from feedsvc.version import Snapshot

log = logging.getLogger(__name__)
MAX_NAME_BYTES = 255 - len(".atom")
MANIFEST_VERSION = 1


def file_name_ok(name: str) -> bool:
    """Whether a feed name can be a file name: a tag holding '/' or NUL, a '.' or
    '..' (page 2 would land in the parent folder) or a name longer than a
    file name may be has no file; the server still answers it where it can."""
    return ("/" not in name and "\0" not in name and name not in (".", "..")
            and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES)


def feed_keys(snap: Snapshot) -> list[FeedKey]:
    """The current document of every category, site-wide and tag feed, in every format."""
    names = [("category", s) for s in snap.config.categories]
    names += [("all", "all")] + [("tag", t) for t in url_tags(snap.views)]
    return [FeedKey(kind, name, fmt) for kind, name in names for fmt in FORMATS]


@dataclass
class Entry:
    """What the manifest remembers of one file it wrote."""
    digest: str        # the document's store key ("" for pages rendered every time)
    sha256: str
    size: int
    mtime_ns: int

    def matches(self, path: Path) -> bool:
        """The file is still the one written (nobody replaced or touched it)."""
        try:
            st = path.stat()
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


@dataclass
class Report:
    files: list[Path] = field(default_factory=list)      # every file this build produces
    written: list[Path] = field(default_factory=list)    # of those, the ones (re)written
    removed: list[Path] = field(default_factory=list)    # produced before, no longer
    kept_own: list[Path] = field(default_factory=list)   # the user's files in the way
    rendered: int = 0
    seconds: float = 0.0

    def line(self, out: str | os.PathLike[str]) -> str:
        own = f", {len(self.kept_own)} of your own files left in place" if self.kept_own else ""
        return (f"{len(self.files)} files in {out}: {len(self.written)} written, "
                f"{len(self.files) - len(self.written)} unchanged, {len(self.removed)} removed"
                f"{own} ({self.rendered} documents rendered, {self.seconds:.2f} s)")


class Export:
    """One output folder and its manifest; build() brings it up to date."""

    def __init__(self, service: FeedService, out: str | os.PathLike[str]) -> None:
        self.service, self.root = service, Path(out)
        self.manifest_path = manifest_path(service.config, self.root)
        self.manifest = self._load_manifest()

    def build(self) -> Report:
        started = time.perf_counter()
        report = Report()
        snap = self.service.snapshot()   # one version for every file written
        new: dict[str, Entry] = {}
        for url_path, digest, render in self._documents(snap):
            self._put(url_path, digest, render, new, report)
        self._remove_stale(new, report)
        self.manifest = new
        self._save_manifest()
        report.seconds = time.perf_counter() - started
        return report

    # -- what is produced ------------------------------------------------------------
    def _documents(self, snap: Snapshot) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
        service = self.service
        prints = Fingerprints(snap)
        for current in feed_keys(snap):
            if not file_name_ok(current.name):
                log.warning("no file for the %s feed %r: not a usable file name",
                            current.kind, current.name)
                continue
            try:
                digest = service.digest(current, snap)
            except NotFound:
                continue
            yield current.path(), digest, _render_of(service, current, snap)
            for key, digest in archive_digests(current, snap, prints):
                yield key.path(), digest, _render_of(service, key, snap)
        # jekyll-feed's files (feed.xml …), where a site switching from it has them.
        for key in jekyll_keys(snap.config, snap.views):
            if file_name_ok(key.name):
                yield key.path(), service.digest(key, snap), _render_of(service, key, snap)
        pages = Pages(service)
        yield "/index.html", "", lambda: pages.index(snap).body
        for n in range(1, tag_pages(snap.views) + 1):
            yield (tag_list_path(n), "",
                   lambda n=n: pages.tag_list(n, snap).body)    # type: ignore[misc]
        yield OPML_PATH, "", lambda: pages.opml(snap).body

    # -- writing ----------------------------------------------------------------------
    def _target(self, url_path: str) -> Path:
        # Files are named by the decoded URL path, as a static server maps them.
        return self.root / unquote(url_path).lstrip("/")

    def _inside(self, target: Path) -> None:
        """Refuse to write through a path that leads out of the folder (checked
        before each write, not for the files left as they are)."""
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"refusing to write outside {self.root}: {target}")

    def _put(self, url_path: str, digest: str, render: Callable[[], bytes],
             new: dict[str, Entry], report: Report) -> None:
        target = self._target(url_path)
        rel = target.relative_to(self.root).as_posix()
        old = self.manifest.get(rel)
        if old is not None and digest and old.digest == digest and old.matches(target):
            new[rel] = old
            report.files.append(target)
            return
        body = render()
        report.rendered += 1
        sha = hashlib.sha256(body).hexdigest()
        if old is not None and old.sha256 == sha and old.matches(target):
            new[rel] = Entry(digest, sha, old.size, old.mtime_ns)
            report.files.append(target)
            return
        if old is None and target.is_file():
            same = _sha_of(target) == sha
            if same or self.manifest:
                if same:        # already what it should be: adopt it, unwritten
                    st = target.stat()
                    new[rel] = Entry(digest, sha, st.st_size, st.st_mtime_ns)
                    report.files.append(target)
                else:           # not from an earlier build: the user's own file
                    log.warning("%s is not from an earlier build; left as it is", target)
                    report.kept_own.append(target)
                return
        self._inside(target)
        atomic.replace_bytes(target, body)
        st = target.stat()
        new[rel] = Entry(digest, sha, st.st_size, st.st_mtime_ns)
        report.files.append(target)
        report.written.append(target)

    def _remove_stale(self, new: dict[str, Entry], report: Report) -> None:
        for rel, entry in self.manifest.items():
            if rel in new:
                continue
            path = self.root / rel
            if entry.matches(path):
                path.unlink()
                report.removed.append(path)
                _prune_empty(path.parent, self.root)
            elif path.exists():
                log.warning("%s changed since the last build; not removed", path)

    # -- the manifest ---------------------------------------------------------------------
    def _load_manifest(self) -> dict[str, Entry]:
        try:
            data: Any = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("%s unreadable (%s): every file is written again", self.manifest_path, e)
            return {}
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            return {}
        try:
            return {rel: Entry(**fields) for rel, fields in data["files"].items()}
        except (TypeError, KeyError, AttributeError):
            return {}

    def _save_manifest(self) -> None:
        data = {"version": MANIFEST_VERSION, "out": str(self.root.resolve()),
                "note": "written by feedsvc build: the files it produced in `out`, so that "
                        "the next build there rewrites only what changed",
                "files": {rel: vars(e) for rel, e in sorted(self.manifest.items())}}
        try:
            atomic.replace_text(self.manifest_path, json.dumps(data, ensure_ascii=False, indent=0))
        except OSError as e:
            # The files are written; only the next build will write them all again.
            log.error("cannot save the build manifest %s: %s", self.manifest_path, e)


class Fingerprints:
    """The archive fingerprints of one feed at a time (index/archives.py),
    asked of the index per feed as the export reaches it, and kept for its
    other formats (feed_keys() gives a feed's formats one after another): a
    build holds one feed's digests, not every feed's archive numbers."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._last: tuple[tuple[str, str, int], tuple[int, list[str]]] | None = None

    def of(self, key: FeedKey, size: int) -> tuple[int, list[str]]:
        feed = (key.kind, key.name, size)
        if self._last is None or self._last[0] != feed:
            self._last = (feed, self.snap.views.archive_fingerprints(key.kind, key.name, size))
        return self._last[1]


def archive_digests(current: FeedKey, snap: Snapshot, prints: Fingerprints,
                    ) -> Iterator[tuple[FeedKey, str]]:
    """Every archive of the feed of `current` with a key that changes when its
    bytes may — from the archive numbers alone (index/archives.py: which posts
    each holds, the generation each last changed at, whether its date has
    come), so that an unchanged archive costs no query of its posts and no
    rendering."""
    size = archive_size(current, snap.config)
    taken, digests = prints.of(current, size)
    for number, slots in enumerate(digests, start=1):
        key = replace(current, archive=number)
        full = number * size <= taken - 1
        text = f"{snap.content_digest}\n{key.cache_id()}\n{full}\n{slots}"
        yield key, "archive:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def manifest_path(config: Config, out: Path) -> Path:
    key = hashlib.sha256(str(out.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return config.state_dir / "builds" / f"{key}.json"


def _render_of(service: FeedService, key: FeedKey, snap: Snapshot) -> Callable[[], bytes]:
    return lambda: service.document(key, snap).body


def _sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove folders left empty by removed files, up to (not including) root."""
    root = root.resolve()
    folder = folder.resolve()
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def exporter(config: Config, out: str | os.PathLike[str], *, clock: Clock = utcnow) -> Export:
    service = FeedService(config, clock=clock)
    service.start()
    return Export(service, out)


def export(config: Config, out: str | os.PathLike[str], *, clock: Clock = utcnow) -> list[Path]:
    """Bring `out` up to date; every file of the build (written or unchanged)."""
    return exporter(config, out, clock=clock).build().files


def watch(config: Config, out: str | os.PathLike[str], *, interval: float = 0.5,
          stop: Callable[[], bool] = lambda: False,
          report: Callable[[Report], None] = lambda r: None) -> None:
    """`feedsvc build --watch`: build, then again after every change of the
    posts or of config.yaml (the server's own watcher), until `stop()`."""
    from feedsvc.watch import Watcher

    job = exporter(config, out)
    watcher = Watcher(job.service).start()
    try:
        report(job.build())
        version = job.service.snapshot().version
        while not stop():
            time.sleep(interval)
            now = job.service.snapshot().version
            if now != version:
                version = now
                report(job.build())
    finally:
        watcher.stop()
