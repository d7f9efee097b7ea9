"""`/status`: what an admin checks first, assembled at the edge from the
service (posts, documents, cache), the upstream collector's saved state per
source and the worker's leader lock, so that the service itself knows
nothing of the upstream stack.

Anyone sees the feeds' health; only the admin (admin.py) sees sources, paths
and the cache's address. Credentials never appear, not even to the admin, and
the public view has no absolute path (redact.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from feedsvc import dates, health, redact
from feedsvc.config import Config
from feedsvc.feeds import FeedKey
from feedsvc.leader import Leader
from feedsvc.model import FORMATS
from feedsvc.service import FeedService
from feedsvc.upstream.collector import source_status


def status(service: FeedService, leader: Leader, *, admin: bool = False) -> dict[str, Any]:
    snap = service.snapshot()
    config, views = snap.config, snap.views
    cats = {}
    for slug in config.categories:
        posts = views.categories.get(slug, [])
        docs = {fmt: service.document(FeedKey("category", slug, fmt), snap) for fmt in FORMATS}
        cats[slug] = {
            "posts": len(posts),
            "newest": dates.rfc3339(posts[0].date) if posts else None,
            "last_modified": dates.rfc3339(docs["rss"].last_modified),
            "etags": {fmt: doc.etag for fmt, doc in docs.items()},
        }
    shown = redact.text if admin else redact.public_text
    sources = source_status(config)
    cache = service.cache_status()
    data: dict[str, Any] = {
        "categories": cats,
        "posts": len(views.all),
        "skipped": [{"file": f, "reason": shown(r)} for f, r in service.index.problem_list()],
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


def write_failures(config: Config, shown: Callable[[str], str]) -> dict[str, Any]:
    """Files of this site that this process currently fails to write (health.py)."""
    failures = {**health.STATE.failures(config.state_dir),
                **health.STATE.failures(config.posts_dir)}
    return {"ok": not failures,
            "failing": [{"file": shown(path), "error": error}
                        for path, error in sorted(failures.items())]}
