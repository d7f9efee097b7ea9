"""`/status`: what an admin checks first, assembled at the edge from the
service (posts, documents, cache), the upstream collector's saved state per
source and the worker's leader lock, so that the service itself knows
nothing of the upstream stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from feedsvc import dates
from feedsvc.feeds import FeedKey
from feedsvc.index import IndexUnavailable, NotReady, Stale
from feedsvc.leader import Leader
from feedsvc.model import FORMATS
from feedsvc.service import FeedService
from feedsvc.upstream.collector import source_status

if TYPE_CHECKING:
    from feedsvc.index.pg import PgLeader


def status(service: FeedService, leader: Leader | PgLeader) -> dict[str, Any]:
    info: dict[str, Any] = {"index": service.index.describe()}
    try:
        info.update(_feeds(service))
    except (NotReady, IndexUnavailable, Stale) as e:
        # Before a first indexing (or while the index cannot be read) the rest of
        # the status still answers: the cause is the point of asking.
        info["index"]["error"] = str(e)
    config = service.config
    return {
        **info,
        "config": str(config.path),
        "config_error": service.config_error,
        "cache": service.cache_status(),
        "sources": source_status(config),
        "worker": leader.describe(),
    }


def _feeds(service: FeedService) -> dict[str, Any]:
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
        "skipped": [{"file": f, "reason": r} for f, r in service.index.problem_list()],
    }
