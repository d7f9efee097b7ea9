"""`/status`: what an admin checks first, assembled at the edge from the
service (posts, documents, cache), the upstream collector's saved state per
source and the worker's leader lock, so that the service itself knows
nothing of the upstream stack."""

from __future__ import annotations

from typing import Any

from feedsvc import dates
from feedsvc.feeds import FeedKey
from feedsvc.leader import Leader
from feedsvc.model import FORMATS
from feedsvc.service import FeedService
from feedsvc.upstream.collector import source_status


def status(service: FeedService, leader: Leader) -> dict[str, Any]:
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
    return {
        "categories": cats,
        "posts": len(views.all),
        "skipped": [{"file": f, "reason": r} for f, r in service.index.problem_list()],
        "config": str(config.path),
        "config_error": service.config_error,
        "cache": service.cache_status(),
        "sources": source_status(config),
        "worker": leader.describe(),
    }
