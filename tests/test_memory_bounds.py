"""Every in-process cache is bounded in bytes, keys included (issue 15,
finding 5): the document store, the service memo, the query variants and the
pages' memo count what their entries really take."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.feeds import FeedKey
from feedsvc.store import Document, MemoryStore

WHEN = dt.datetime(2022, 3, 21, tzinfo=dt.UTC)


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of an object and of what it holds (tuples, lists, dataclass fields)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None or isinstance(obj, bool | int):
        return 0
    seen.add(id(obj))
    total = sys.getsizeof(obj)
    if isinstance(obj, tuple | list):
        total += sum(deep_size(x, seen) for x in obj)
    elif isinstance(obj, Document):
        total += sum(deep_size(getattr(obj, f), seen) for f in Document.__dataclass_fields__)
    return total


def stored_size(store: MemoryStore) -> int:
    seen: set[int] = set()
    return sum(deep_size(k, seen) + deep_size(v, seen) for k, v in store._items.items())


def test_the_store_counts_keys_and_small_documents() -> None:
    # Tiny documents (a 304's worth) under long keys: what a body-only count missed.
    store = MemoryStore(max_items=10_000, max_bytes=256 * 2**10)
    for i in range(2000):
        doc = Document.of(b"x", "application/rss+xml; charset=utf-8", WHEN)
        store.put((FeedKey("tag", f"{i}-" + "t" * 3000, "rss"), ("digest", 1, i)), doc)
    assert store.bytes <= 256 * 2**10
    assert stored_size(store) <= store.bytes
    assert len(store) < 2000


def test_the_service_and_pages_memos_are_bounded(site: Path) -> None:
    app = create_app(load_config(site), watch=False)
    service, pages = app.extensions["feedsvc"], app.extensions["feedsvc.pages"]
    service._memo.max_bytes = service._variants.max_bytes = pages._memo.max_bytes = 64 * 2**10
    client = app.test_client()
    for limit in range(1, 40):
        for fmt in ("rss", "atom", "json"):
            client.get(f"/feeds/kunmingribao.{fmt}?limit={limit}")
            client.get(f"/feeds/all.{fmt}", headers={"Sec-Fetch-Dest": "document"})
            client.get(f"/tags/昆明.{fmt}")
    for store in (service._memo, service._variants, pages._memo):
        assert 0 < store.bytes <= 64 * 2**10 or len(store) == 1
        assert stored_size(store) <= store.bytes


def test_the_export_holds_one_feeds_archive_digests_not_every_feeds_numbers(
        tmp_path: Path) -> None:
    """`feedsvc build` asks the index for one feed's archives at a time (issue
    12: memory does not grow with the posts): walking every feed's archive
    keys holds a digest per archive of the largest feed, far less than one
    entry per archive number of every feed (what a whole-site read held:
    ~80,000 at 20,000 posts)."""
    import tracemalloc

    from support import make_site, post

    from feedsvc.export import Fingerprints, archive_digests, feed_keys
    from feedsvc.service import FeedService

    tags = [f"t{i}" for i in range(300)]
    posts = {f"2021-{1 + i // 250:02d}-{1 + i % 25:02d}-p{i}.md": post(
        f"P{i}", f"2021-{1 + i // 250:02d}-{1 + i % 25:02d} {i % 24:02d}:{i % 60:02d}:00 +0800",
        tags=f"[{tags[i % 300]}, {tags[(i * 7 + 1) % 300]}]") for i in range(2000)}
    service = FeedService(load_config(make_site(tmp_path / "site", posts)))
    service.start()
    snap = service.snapshot()
    keys = feed_keys(snap)
    numbers = sum(snap.views.archive_taken(k.kind, k.name) for k in keys[::3])
    assert numbers >= 2000 * 4 - 10          # a category, two tags and the site-wide feed each
    prints = Fingerprints(snap)
    tracemalloc.start()
    archives = sum(1 for key in keys for _ in archive_digests(key, snap, prints))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert archives >= 3 * (2000 // 20)
    # One tuple of (number, stamp, visible) per number alone is ~100 bytes.
    assert peak < numbers * 30, (peak, numbers)
