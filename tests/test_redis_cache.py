"""The Redis-shared cache, against the machine's real Redis on 127.0.0.1:6379
(DBs 3 and 4 belong to these tests): two instances answer with the same bytes
and ETags; Redis missing at start or going away mid-run costs nothing but
sharing, and sharing comes back with Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import Server, machine_redis, make_site, post, running, wait_for
from tcp_proxy import TcpProxy
from wire import fetch

from feedsvc.store import RedisStore


@pytest.fixture(autouse=True, scope="module")
def _machine_redis() -> Iterator[None]:
    with machine_redis():
        yield

REDIS = ("127.0.0.1", 6379)
SHARED_DB, PROXY_DB = 3, 4
PLAIN = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}
FEEDS = ["/feeds/kunmingribao.rss", "/feeds/kunmingribao.atom", "/feeds/caijing.json",
         "/feeds/empty.rss", "/feeds/all.atom"]


def clean(db: int) -> redis.Redis:
    client = redis.Redis(*REDIS, db=db)
    client.ping()  # no Redis is a failure here, never a skip (.ci/run starts it)
    keys = list(client.scan_iter(RedisStore.PREFIX + "*"))
    if keys:
        client.delete(*keys)
    return client


def redis_site(root: Path, port: int, db: int) -> Path:
    return make_site(root, {
        "kunmingribao/2022-03-21-first.md": post("第一条", "2022-03-21 06:00:08 +0800"),
        "2022-03-22-caijing.md": post("财经一", "2022-03-22 09:00:00 +0800", categories="caijing"),
    }, config={"cache": {"type": "redis", "url": f"redis://127.0.0.1:{port}/{db}"}})


def status(server: Server) -> dict:  # type: ignore[type-arg]
    return json.loads(fetch(server.url, "/status", PLAIN).body)  # type: ignore[no-any-return]


def stored_etags(client: redis.Redis) -> set[str]:
    return {client.hget(k, "etag").decode()  # type: ignore[union-attr]
            for k in client.scan_iter(RedisStore.PREFIX + "*")}


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Path, redis.Redis]]:
    client = clean(SHARED_DB)
    yield redis_site(tmp_path / "site", REDIS[1], SHARED_DB), client
    clean(SHARED_DB)


def test_two_instances_share_bytes_and_etags(shared: tuple[Path, redis.Redis]) -> None:
    site, client = shared
    with running(site, workers=2) as a, running(site, workers=1) as b:
        for path in FEEDS:
            for headers in (PLAIN, GZIP):
                ra, rb = fetch(a.url, path, headers), fetch(b.url, path, headers)
                assert ra.status == rb.status == 200
                assert ra.body == rb.body and ra.etag == rb.etag
                assert ra.headers["last-modified"] == rb.headers["last-modified"]
                # A client moving between instances behind a balancer still gets 304.
                assert fetch(b.url, path, {**headers, "If-None-Match": ra.etag}).status == 304
        assert fetch(a.url, FEEDS[0], PLAIN).etag.strip('"') in stored_etags(client)
        assert status(a)["cache"]["available"] is True

        old = fetch(a.url, FEEDS[0], PLAIN).etag
        (site.parent / "_posts" / "2022-03-23-new.md").write_text(
            post("新的一条", "2022-03-23 10:00:00 +0800"), encoding="utf-8")

        def both_serve_it() -> bool:
            ra, rb = fetch(a.url, FEEDS[0], PLAIN), fetch(b.url, FEEDS[0], PLAIN)
            return ra.etag != old and ra.etag == rb.etag and ra.body == rb.body
        wait_for(both_serve_it, timeout=10)
        assert "新的一条" in fetch(b.url, FEEDS[0], PLAIN).body.decode()
        assert fetch(a.url, FEEDS[0], PLAIN).etag.strip('"') in stored_etags(client)


def test_redis_down_at_start_then_back(tmp_path: Path) -> None:
    client = clean(PROXY_DB)
    proxy = TcpProxy(REDIS)   # not started: nothing listens on its port yet
    proxy.start()
    port = proxy.port
    proxy.close()
    site = redis_site(tmp_path / "site", port, PROXY_DB)
    with running(site, workers=1) as server:
        first = fetch(server.url, FEEDS[0], PLAIN)
        assert first.status == 200
        assert fetch(server.url, FEEDS[0], {**PLAIN, "If-None-Match": first.etag}).status == 304
        cache = status(server)["cache"]
        assert cache["available"] is False and cache["last_error"]
        assert "unavailable" in server.output()

        with TcpProxy(REDIS, port):
            wait_for(lambda: status(server)["cache"]["available"], timeout=10)
            (site.parent / "_posts" / "2022-03-24-later.md").write_text(
                post("后来的", "2022-03-24 10:00:00 +0800"), encoding="utf-8")
            new = wait_for(lambda: (r := fetch(server.url, FEEDS[0], PLAIN)).etag != first.etag
                           and r, timeout=10)
            wait_for(lambda: status(server) and new.etag.strip('"') in stored_etags(client),
                     timeout=10)
            # The version rendered while Redis was missing was written on its return.
            assert first.etag.strip('"') in stored_etags(client)
            assert "is back" in server.output()
    clean(PROXY_DB)


def test_redis_going_away_mid_run(tmp_path: Path) -> None:
    client = clean(PROXY_DB)
    with TcpProxy(REDIS) as proxy:
        site = redis_site(tmp_path / "site", proxy.port, PROXY_DB)
        with running(site, workers=2) as server:
            before = {p: fetch(server.url, p, PLAIN) for p in FEEDS}
            assert before[FEEDS[0]].etag.strip('"') in stored_etags(client)

            proxy.close()   # Redis goes away under the running server
            for path, reply in before.items():
                again = fetch(server.url, path, PLAIN)
                assert (again.status, again.body) == (200, reply.body)
                assert fetch(server.url, path, {**PLAIN, "If-None-Match": reply.etag}
                             ).status == 304
            # A change while Redis is away is rendered in-process.
            (site.parent / "_posts" / "2022-03-25-during.md").write_text(
                post("断线时的新闻", "2022-03-25 10:00:00 +0800"), encoding="utf-8")
            during = wait_for(lambda: (r := fetch(server.url, FEEDS[0], PLAIN)).status == 200
                              and "断线时的新闻" in r.body.decode() and r, timeout=10)
            assert during.etag.strip('"') not in stored_etags(client)
            assert status(server)["cache"]["available"] is False
            assert "unavailable" in server.output()

            proxy.start()   # same port: Redis is back
            wait_for(lambda: status(server)["cache"]["available"], timeout=10)
            time.sleep(0.1)
            (site.parent / "_posts" / "2022-03-26-after.md").write_text(
                post("恢复后的新闻", "2022-03-26 10:00:00 +0800"), encoding="utf-8")
            after = wait_for(lambda: "恢复后的新闻" in (r := fetch(server.url, FEEDS[0], PLAIN)
                                                       ).body.decode() and r, timeout=10)
            # Each worker notices on its next use of Redis (here, /status), and
            # then writes there what it rendered while Redis was away.
            wanted = {after.etag.strip('"'), during.etag.strip('"')}
            wait_for(lambda: status(server) and wanted <= stored_etags(client), timeout=10)
    clean(PROXY_DB)


@pytest.mark.parametrize("cache", ["memory", "redis"])
def test_one_rendering_per_version_under_concurrent_requests(tmp_path: Path, cache: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from feedsvc.config import load_config
    from feedsvc.feeds import FeedKey
    from feedsvc.service import FeedService

    clean(SHARED_DB)
    site = (redis_site(tmp_path / "site", REDIS[1], SHARED_DB) if cache == "redis"
            else make_site(tmp_path / "site", {"2022-03-21-one.md": post("一", "2022-03-21")}))
    service = FeedService(load_config(site))
    service.start()
    assert service.store.describe()["type"] == cache
    key = FeedKey("all", "all", "atom")
    with ThreadPoolExecutor(16) as pool:
        docs = list(pool.map(lambda _: service.document(key), range(64)))
    # Rendered once: every request got the very same document object.
    assert all(doc is docs[0] for doc in docs)
    clean(SHARED_DB)
