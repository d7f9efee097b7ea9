"""`/status`: what an admin checks first, assembled at the edge from the
service (posts, documents, cache), the upstream collector's saved state per
source and the worker's leader lock, so that the service itself knows
nothing of the upstream stack.

Anyone sees the feeds' health; only the admin (admin.py) sees sources, paths
and the cache's address. Credentials never appear, not even to the admin, and
the public view has no absolute path (redact.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feedsvc import dates, health, redact
from feedsvc.config import Config
from feedsvc.feeds import FeedKey
from feedsvc.index import IndexUnavailable, NotReady, Stale, sources
from feedsvc.leader import Leader
from feedsvc.model import FORMATS
from feedsvc.service import FeedService
from feedsvc.upstream.state import source_status

if TYPE_CHECKING:
    from feedsvc.index.pg import PgLeader


def status(service: FeedService, leader: Leader | PgLeader, *,
           admin: bool = False) -> dict[str, Any]:
    shown = redact.text if admin else redact.public_text
    info: dict[str, Any] = {"index": _scrubbed(service.index.describe(), shown)}
    try:
        info.update(_feeds(service, shown))
    except (NotReady, IndexUnavailable, Stale) as e:
        # Before a first indexing (or while the index cannot be read) the rest of
        # the status still answers: the cause is the point of asking.
        info["index"]["error"] = shown(str(e))
    config = service.config
    sources = source_status(config)
    cache = service.cache_status()
    data: dict[str, Any] = {
        **info,
        "config_error": shown(service.config_error) if service.config_error else None,
        "cache": cache if admin else {k: v for k, v in cache.items() if k != "url"},
        "source_health": {"total": len(sources),
                          "failing": sum(1 for s in sources if s["last_error"])},
        "state_writes": write_failures(config, shown),
        "worker": leader.describe(),
    }
    if admin:
        data["config"] = str(config.path)
        data["posts_dir"] = str(config.posts_dir)
        data["state_dir"] = str(config.state_dir)
        data["sources"] = sources
    return data


def _scrubbed(value: Any, shown: Callable[[str], str]) -> Any:
    """Every text in `value` through `shown` (the index's description may name a
    database URL or a file)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, shown) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, shown) for v in value]
    return value


def _feeds(service: FeedService, shown: Callable[[str], str]) -> dict[str, Any]:
    snap = service.snapshot()
    config, views = snap.config, snap.views
    cats = {}
    for slug in config.categories:
        newest = views.posts("category", slug, 0, 1)
        docs = ({fmt: service.document(FeedKey("category", slug, fmt), snap) for fmt in FORMATS}
                if views.ready else {})
        cats[slug] = {
            "posts": views.count("category", slug),
            "newest": dates.rfc3339(newest[0].date) if newest else None,
            "last_modified": dates.rfc3339(docs["rss"].last_modified) if docs else None,
            "etags": {fmt: doc.etag for fmt, doc in docs.items()},
        }
    return {
        "categories": cats,
        "posts": views.total(),
        "skipped": [{"file": f, "reason": shown(r)} for f, r in service.index.problem_list()],
    }


def write_failures(config: Config, shown: Callable[[str], str]) -> dict[str, Any]:
    """Files of this site that a process of this machine currently fails to
    write (health.py: the record every worker shares), with the process that
    saw it and since when."""
    failures = {**health.STATE.failing(config.state_dir), **health.STATE.failing(config.posts_dir)}
    # Upstream and WebSub state in a PostgreSQL index (index/sources.py).
    failures.update({k: v for k, v in health.STATE.failing().items()
                     if k == str(sources.place(config))})
    return {"ok": not failures,
            "failing": [{"file": shown(path), "error": entry["error"], "pid": entry["pid"],
                         "since": dates.rfc3339(dt.datetime.fromtimestamp(entry["since"], dt.UTC))}
                        for path, entry in sorted(failures.items())]}
