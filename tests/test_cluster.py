"""A cluster on one PostgreSQL index and one Redis (issue 12): three instances,
each with a state_dir of its own as on three machines. The leader (the one
holding the advisory lock) scans and watches posts_dir; a standby that has
the posts takes over when the leader is killed; a serve-only instance without
any posts folder answers the same bytes and ETags from the shared index. A
standby cut off from PostgreSQL (through a proxy of the tests' own) says why
in /status, and stops saying it once PostgreSQL answers it again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from support import Server, machine_redis, make_site, new_pg_database, post, running, wait_for
from tcp_proxy import TcpProxy

REDIS_URL = "redis://127.0.0.1:6379/9"
FEEDS = ("/feeds/kunmingribao.atom", "/feeds/kunmingribao.rss", "/feeds/all.json")


@pytest.fixture(autouse=True)
def _redis() -> Iterator[None]:
    with machine_redis():
        redis.Redis.from_url(REDIS_URL).flushdb()
        yield
        redis.Redis.from_url(REDIS_URL).flushdb()


def instance(root: Path, name: str, posts_dir: str, index_url: str) -> Path:
    """Another machine's config: its own state_dir, the shared index and cache."""
    folder = root / name
    folder.mkdir()
    data = yaml.safe_load((root / "site" / "config.yaml").read_text(encoding="utf-8"))
    data.update(posts_dir=posts_dir, state_dir=str(folder / "state"),
                index={"type": "postgres", "url": index_url},
                cache={"type": "redis", "url": REDIS_URL})
    cfg = folder / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def test_three_instances_one_leader_same_bytes_and_a_standby_takes_over(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {
        f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800")
        for d in range(1, 8)})
    posts = str(site.parent / "_posts")
    url = new_pg_database()
    first = instance(tmp_path, "a", posts, url)
    standby = instance(tmp_path, "b", posts, url)
    serve_only = instance(tmp_path, "c", str(tmp_path / "no-such-folder"), url)
    with running(first) as a:
        assert a.leads()
        with running(standby) as b, running(serve_only) as c:
            for path in FEEDS:
                answers = [s.get(path) for s in (a, b, c)]
                assert {r.status_code for r in answers} == {200}
                assert len({r.content for r in answers}) == 1, path
                assert len({r.headers["ETag"] for r in answers}) == 1, path
            assert not b.leads() and not c.leads()
            a.die()
            # The standby takes the lock within seconds and indexes what comes next.
            wait_for(lambda: b.leads(), timeout=20)
            (site.parent / "_posts" / "2022-03-20-after.md").write_text(
                post("After the leader died", "2022-03-20 10:00:00 +0800"), encoding="utf-8")
            for s in (b, c):
                wait_for(lambda s=s: b"After the leader died" in s.get(FEEDS[0]).content,
                         timeout=20)
            assert b.get(FEEDS[0]).headers["ETag"] == c.get(FEEDS[0]).headers["ETag"]
            assert not c.leads()   # no posts folder: never the leader


def worker(server: Server) -> dict[str, Any]:
    """The leader election as /status gives it: is_leader, last_error."""
    resp = server.get("/status")
    assert resp.status_code == 200, resp.text
    info: dict[str, Any] = resp.json()["worker"]
    return info


def test_a_standby_cut_off_from_postgres_says_why_until_postgres_answers_again(
        tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {
        f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800")
        for d in range(1, 4)})
    posts = str(site.parent / "_posts")
    url = new_pg_database()
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    port = proxy.port
    first = instance(tmp_path, "a", posts, url)
    standby = instance(tmp_path, "b", posts, url.replace("127.0.0.1:5432", f"127.0.0.1:{port}"))
    try:
        with running(first) as a, running(standby) as b:
            assert a.leads() and not b.leads() and worker(b)["last_error"] is None
            proxy.close()               # nothing listens there: the standby's PostgreSQL is "down"
            wait_for(lambda: "PostgreSQL at" in str(worker(b)["last_error"]), timeout=30)
            with TcpProxy(("127.0.0.1", 5432), port=port):
                # Its next try reaches PostgreSQL and learns that another
                # instance leads: nothing is wrong any more.
                wait_for(lambda: worker(b)["last_error"] is None, timeout=30)
                assert not b.leads()
                assert a.leads() and worker(a)["last_error"] is None
    finally:
        proxy.close()
