"""`feedsvc build`: every document the service answers, written at the path
of its URL, from the same FeedService, hence byte-identical."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from feedsvc import atomic, content
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.errors import NotFound
from feedsvc.feeds import FeedKey, url_tags
from feedsvc.model import FORMATS
from feedsvc.opml import PATH as OPML_PATH
from feedsvc.pages import Pages
from feedsvc.service import FeedService
from feedsvc.version import Snapshot

log = logging.getLogger(__name__)
MAX_NAME_BYTES = 255 - len(".atom")


def file_name_ok(name: str) -> bool:
    """Whether a feed name can be a file name: a tag holding '/' or NUL, a '.' or
    '..' (page 2 would land in the parent folder) or a name longer than a
    file name may be has no file; the server still answers it where it can."""
    return ("/" not in name and "\0" not in name and name not in (".", "..")
            and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES)


def feed_keys(snap: Snapshot) -> list[FeedKey]:
    """Page 1 of every category, site-wide and tag feed, in every format."""
    names = [("category", s) for s in snap.config.categories]
    names += [("all", "all")] + [("tag", t) for t in url_tags(snap.views)]
    return [FeedKey(kind, name, fmt) for kind, name in names for fmt in FORMATS]


def export(config: Config, out: str | os.PathLike[str], *, clock: Clock = utcnow) -> list[Path]:
    service = FeedService(config, clock=clock)
    service.start()
    # Every post is rendered once and reused by each feed and format it is in.
    content.RENDERS.keep(len(service.index.posts))
    root = Path(out)
    written = []
    snap = service.snapshot()   # one version for every file written
    for first in feed_keys(snap):
        if not file_name_ok(first.name):
            log.warning("no file for the %s feed %r: not a usable file name", first.kind, first.name)
            continue
        page = 1
        while True:
            key = FeedKey(first.kind, first.name, first.fmt, page)
            try:
                doc = service.document(key, snap)
            except NotFound:
                break
            written.append(_write(root, key.path(), doc.body))
            page += 1
    written += export_pages(Pages(service), root, snap)
    return written


def export_pages(pages: Pages, root: Path, snap: Snapshot) -> list[Path]:
    """The index page and the OPML file, as `/` and `/opml.xml` serve them."""
    return [_write(root, "/index.html", pages.index(snap).body),
            _write(root, OPML_PATH, pages.opml(snap).body)]


def _write(root: Path, url_path: str, body: bytes) -> Path:
    # Files are named by the decoded URL path, as a static server maps them.
    from urllib.parse import unquote

    target = root / unquote(url_path).lstrip("/")
    if not target.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write outside {root}: {url_path}")
    atomic.replace_bytes(target, body)
    return target
