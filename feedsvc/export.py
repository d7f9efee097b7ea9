"""`feedsvc build`: every document the service answers, written at the path
of its URL, from the same FeedService, hence byte-identical."""

from __future__ import annotations

import os
from pathlib import Path

from feedsvc.collect import Clock, utcnow
from feedsvc.config import Config
from feedsvc.errors import NotFound
from feedsvc.feeds import FeedKey
from feedsvc.model import FORMATS
from feedsvc.service import FeedService


def feed_keys(service: FeedService) -> list[FeedKey]:
    """Page 1 of every category, site-wide and tag feed, in every format."""
    views = service.index.views()
    names = [("category", s) for s in service.config.categories]
    names += [("all", "all")] + [("tag", t) for t in sorted(views.tags)]
    return [FeedKey(kind, name, fmt) for kind, name in names for fmt in FORMATS]


def export(config: Config, out: str | os.PathLike[str], *, clock: Clock = utcnow) -> list[Path]:
    service = FeedService(config, clock=clock)
    service.start()
    root = Path(out)
    written = []
    for first in feed_keys(service):
        page = 1
        while True:
            key = FeedKey(first.kind, first.name, first.fmt, page)
            try:
                doc = service.document(key)
            except NotFound:
                break
            written.append(_write(root, key.path(), doc.body))
            page += 1
    return written


def _write(root: Path, url_path: str, body: bytes) -> Path:
    # Files are named by the decoded URL path, as a static server maps them.
    from urllib.parse import unquote

    target = root / unquote(url_path).lstrip("/")
    if not target.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write outside {root}: {url_path}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(body)
    os.replace(tmp, target)
    return target
