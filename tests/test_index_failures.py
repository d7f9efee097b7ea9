"""Bad input for the index (issue 12): PostgreSQL unreachable at start and
mid-run (through a proxy of our own: the shared server is never touched), a
locked SQLite database, a disk that fills while indexing (SQLite's state_dir,
and the tablespace of a PostgreSQL cluster of the tests' own), two writers
racing. A spoilt SQLite file: test_index_spoilt.py.
Against `feedsvc serve` on loopback (support.Server): the service keeps
serving what it last had or says it is not ready, reports the cause, recovers
by itself, and never answers 500."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import feedparser
import yaml
from disk_support import fill
from private_postgres import PrivatePostgres
from support import Server, make_site, new_pg_database, post, running, statuses, wait_for
from tcp_proxy import TcpProxy
from wire import Reply, fetch_all

from feedsvc.config import load_config
from feedsvc.index import Index

POSTS = {f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800")
         for d in range(1, 6)}
FEED = "/feeds/kunmingribao.atom"


def titles(body: bytes) -> list[str]:
    return [e.title for e in feedparser.parse(body).entries]


def through(proxy_port: int, cfg: Path) -> Path:
    """The site's config, its index on a new database reached through the proxy."""
    url = new_pg_database()
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["index"] = {"type": "postgres",
                     "url": url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy_port}")}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def test_postgres_unreachable_at_start_then_back(tmp_path: Path) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    port = proxy.port
    proxy.close()                       # nothing listens there: PostgreSQL is "down"
    cfg = through(port, make_site(tmp_path / "site", POSTS))
    # The leader's watcher retries every second.
    with running(cfg, workers=2, ready=False) as server:
        resp = server.get(FEED)
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert server.get("/healthz").status_code == 200
        ready = server.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.text, ready.text
        assert "unreachable" in str(status_index(server)["error"])
        with TcpProxy(("127.0.0.1", 5432), port=port):
            wait_for(lambda: server.get("/readyz").status_code == 200, timeout=30)
            # Each worker reconnects on its own: the feed, once every one has.
            wait_for(lambda: {r.status for r in by_worker(server, FEED).values()} == {200},
                     timeout=30)
            assert all(titles(r.body)[0] == "P5" for r in by_worker(server, FEED).values())


def test_postgres_lost_mid_run_serves_what_it_had_and_catches_up(tmp_path: Path) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    port = proxy.port
    site = make_site(tmp_path / "site", POSTS)
    cfg = through(port, site)
    with running(cfg, workers=2) as server:
        # What each worker last had is its own (its memory cache): both made it.
        before = by_worker(server, FEED)
        assert {r.status for r in before.values()} == {200}
        proxy.close()                   # every connection cut, nothing listening
        for pid, during in by_worker(server, FEED).items():
            assert during.status == 200 and during.body == before[pid].body
            assert during.etag == before[pid].etag
        # A document no process made cannot be read: 503, never a 500.
        never_made = server.get("/feeds/all.json")
        assert never_made.status_code == 503 and never_made.headers["Retry-After"]
        ready = server.get("/readyz")
        assert ready.status_code == 503 and "PostgreSQL" in ready.text, ready.text
        (site.parent / "_posts" / "2022-03-09-during.md").write_text(
            post("Written during the outage", "2022-03-09 10:00:00 +0800"), encoding="utf-8")
        with TcpProxy(("127.0.0.1", 5432), port=port):
            wait_for(lambda: "Written during the outage" in titles(server.get(FEED).content),
                     timeout=30)
            assert status_index(server)["ready"] is True
            assert server.get("/feeds/all.json").status_code == 200


def test_a_locked_sqlite_index_keeps_serving_and_the_change_comes_after(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", POSTS)
    config = load_config(site)
    with running(site, workers=2) as server:
        before = server.get(FEED)
        # Both workers up on the shared index before it is locked (one still
        # starting would keep an index of its own, and serve the change early).
        statuses(server)
        [db] = config.state_dir.glob("index-*.sqlite3")
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")    # another writer holds the lock
        try:
            (site.parent / "_posts" / "2022-03-08-locked.md").write_text(
                post("While locked", "2022-03-08 10:00:00 +0800"), encoding="utf-8")
            # The leader waits for the lock (5 s), gives up and reports it.
            wait_for(lambda: "locked" in str(status_index(server)["last_error"]), timeout=30)
            during = server.get(FEED)       # readers are not blocked (WAL)
            assert during.status_code == 200 and during.content == before.content
            assert server.get("/readyz").status_code == 200
        finally:
            other.execute("ROLLBACK")
            other.close()
        wait_for(lambda: "While locked" in titles(server.get(FEED).content), timeout=20)
        wait_for(lambda: status_index(server)["last_error"] is None, timeout=20)
        assert every_index(server, lambda i: i["last_error"] is None)
        log = server.output()
    assert "database is locked" in log and "the post index is updated again" in log, log


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (the tests run as root here)."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_disk_that_fills_while_indexing_then_frees(tmp_path: Path) -> None:
    body = "<p>" + "新闻正文，" * 400 + "</p>"
    site = make_site(tmp_path / "site", {
        f"2022-{m:02d}-{d:02d}-p{m}-{d}.md": post(f"P{m}-{d}", f"2022-{m:02d}-{d:02d} 10:00:00"
                                                   " +0800", body=body)
        for m in range(1, 13) for d in range(1, 29)})
    with small_disk(tmp_path / "disk", "256k") as disk:
        data = yaml.safe_load(site.read_text(encoding="utf-8"))
        data["state_dir"] = str(disk / "state")
        site.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        with running(site, workers=2, ready=False) as server:   # the first indexing fills the disk
            [why] = wait_for(lambda: (r := server.get("/readyz")).status_code == 503
                             and "No space left on device" in r.text and [r], timeout=60)
            assert "database or disk is full" in why.text    # SQLite's words beside
            resp = server.get(FEED)
            assert resp.status_code == 503 and resp.headers["Retry-After"]  # never partial
            # Whichever worker answers: the leader's error is the machine's (health.py).
            assert every_index(server, lambda i: "No space left on device" in str(i["last_error"]))
            subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
            wait_for(lambda: server.get("/readyz").status_code == 200, timeout=60)
            assert len(titles(server.get(FEED).content)) == 20
            assert every_index(server, lambda i: i["last_error"] is None)


def on_index(cfg: Path, url: str) -> Path:
    """The site's config with its index on the PostgreSQL database `url`."""
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["index"] = {"type": "postgres", "url": url}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def incompressible(kb: int) -> str:
    """A body of `kb` kB that neither zlib nor PostgreSQL can shrink: it takes
    new pages of the tablespace, not room left in old ones."""
    words = base64.b64encode(os.urandom(kb * 768)).decode()
    return "<p>" + " ".join(words[i:i + 40] for i in range(0, len(words), 40)) + "</p>"


def status_index(server: Server) -> dict[str, Any]:
    resp = server.get("/status")
    assert resp.status_code == 200, resp.text
    info: dict[str, Any] = resp.json()["index"]
    return info


def by_worker(server: Server, path: str) -> dict[int, Reply]:
    """`path` as each worker answers it (asked after /status on one connection,
    so that the answer's worker is known)."""
    workers, answers = server.worker_pids(), {}
    for _ in range(200):
        who, reply = fetch_all(server.url, ["/status", path])
        answers[json.loads(who.body)["worker"]["pid"]] = reply
        if set(answers) >= workers:
            return answers
    raise AssertionError(f"not every worker answered {path}: {sorted(answers)} of {workers}")


def every_index(server: Server, check: Callable[[dict[str, Any]], bool]) -> bool:
    """`check` holds for the index section of every answer of /status, asked 20
    times and until every worker has answered."""
    failed = [s["worker"] | {"index": s["index"]} for s in statuses(server)
              if not check(s["index"])]
    assert not failed, failed
    return True


def full_disk_errors(cluster: PrivatePostgres) -> int:
    """How many writes the private cluster refused for want of space (its own log)."""
    return cluster.server_log().count("No space left on device")


def test_a_postgres_disk_that_fills_on_a_change_keeps_serving_then_catches_up(
        tmp_path: Path, private_pg: PrivatePostgres) -> None:
    """The tablespace of a private cluster (tests/private_postgres.py) fills
    while a change is indexed: the served feed stays what it was, /status
    and the log say why (SQLSTATE 53100), once however often it is retried,
    and the change is served once the filler is gone, with no restart."""
    with private_pg.small_disk("8m") as small:
        cfg = on_index(make_site(tmp_path / "site", POSTS), small.new_database())
        with running(cfg, workers=2) as server:
            before = server.get(FEED)
            assert before.status_code == 200
            filler = fill(small.disk)
            refused = full_disk_errors(private_pg)
            (cfg.parent / "_posts" / "2022-03-09-big.md").write_text(
                post("A big one", "2022-03-09 10:00:00 +0800", body=incompressible(400)),
                encoding="utf-8")
            full = wait_for(lambda: (i := status_index(server)).get("last_error") and i,
                            timeout=30)
            assert "No space left on device (SQLSTATE 53100: could not extend file" \
                in full["last_error"], full
            assert full["ready"] is True
            assert every_index(server, lambda i: "SQLSTATE 53100" in str(i["last_error"]))
            # Retried (every 2 s) at least twice more while the disk stays full.
            wait_for(lambda: full_disk_errors(private_pg) >= refused + 3, timeout=30)
            for path in (FEED, "/feeds/all.json", "/feeds/kunmingribao.rss", "/readyz"):
                assert server.get(path).status_code == 200, path
            during = server.get(FEED)
            assert during.content == before.content
            assert during.headers["ETag"] == before.headers["ETag"]
            filler.unlink()
            wait_for(lambda: "A big one" in titles(server.get(FEED).content), timeout=30)
            assert every_index(server, lambda i: i["last_error"] is None)
            assert titles(server.get(FEED).content)[:2] == ["A big one", "P5"]
            log = server.output()
    assert log.count("cannot update the post index") == 1, log
    assert "No space left on device (SQLSTATE 53100" in log
    assert log.count("the post index is updated again") == 1, log


def test_a_postgres_disk_that_fills_while_indexing_says_not_ready_then_indexes(
        tmp_path: Path, private_pg: PrivatePostgres) -> None:
    """A first indexing that the tablespace cannot hold: never a partial feed
    (503 with Retry-After), /readyz and /status say why, /healthz stays 200;
    with the space back the same server finishes by itself."""
    posts = {f"2022-{m:02d}-{d:02d}-p{m}-{d}.md": post(
        f"P{m}-{d}", f"2022-{m:02d}-{d:02d} 10:00:00 +0800", body=incompressible(3))
        for m in range(1, 11) for d in range(1, 29)}
    with private_pg.small_disk("8m") as small:
        cfg = on_index(make_site(tmp_path / "site", posts), small.new_database())
        filler = fill(small.disk)
        # Room for the tables (about 260 kB) and a part of the 280 posts (about 1 MB).
        os.truncate(filler, filler.stat().st_size - 512 * 1024)
        with running(cfg, workers=2, ready=False) as server:
            # (a list: a 503 Response is falsy)
            [why] = wait_for(lambda: (r := server.get("/readyz")).status_code == 503
                             and "No space left on device" in r.text and [r], timeout=60)
            assert why.headers["Retry-After"]
            resp = server.get(FEED)
            assert resp.status_code == 503 and resp.headers["Retry-After"]
            assert server.get("/feeds/all.json").status_code == 503
            assert server.get("/healthz").status_code == 200
            assert every_index(server, lambda i: i["ready"] is False and
                               "No space left on device (SQLSTATE 53100" in str(i["last_error"]))
            filler.unlink()
            wait_for(lambda: server.get("/readyz").status_code == 200, timeout=60)
            assert len(titles(server.get(FEED).content)) == 20
            for status in statuses(server):
                assert status["categories"]["kunmingribao"]["posts"] == 280
                assert status["index"]["last_error"] is None, status["worker"]


def test_two_writers_racing_leave_one_consistent_index(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {
        f"2022-{m:02d}-{d:02d}-p{m}-{d}.md": post(f"P{m}-{d}", f"2022-{m:02d}-{d:02d} 10:00:00"
                                                   " +0800")
        for m in range(1, 13) for d in range(1, 29)})
    config = load_config(site)
    first, second = Index(config), Index(config)    # two connections, as two processes
    errors: list[BaseException] = []

    def scan(index: Index) -> None:
        try:
            index.scan()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=scan, args=(i,)) for i in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    views = first.views()
    assert views.count("category", "kunmingribao") == 12 * 28
    assert len(views.posts("category", "kunmingribao", 0, 1000)) == 12 * 28
    assert views.total() == 12 * 28
    assert len({p.guid for p in views.all}) == 12 * 28


def test_two_leaders_racing_on_postgres_show_one_file_of_an_id(tmp_path: Path) -> None:
    """Two writers on one PostgreSQL index, each adding a file of the same id:
    exactly one of them (the lexically first) is shown. Both are held inside
    their transactions by a table lock of a third session, so without the
    index's write lock they interleave every time, not by chance."""
    import psycopg

    cfg = make_site(tmp_path / "site", {})
    url = new_pg_database()
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["index"] = {"type": "postgres", "url": url}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_config(cfg)
    first, second = Index(config), Index(config)    # two connections, as two leaders
    first.scan()
    posts = config.posts_dir
    # Two dates: the files' terms rows do not collide, only their choice of what is shown.
    (posts / "2022-03-01-a.md").write_text(
        post("A", "2022-03-01 10:00:00 +0800", guid="urn:one"), encoding="utf-8")
    (posts / "2022-03-02-b.md").write_text(
        post("B", "2022-03-02 10:00:00 +0800", guid="urn:one"), encoding="utf-8")
    errors: list[BaseException] = []

    def update(index: Index, rel: str) -> None:
        try:
            index.update([rel])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with psycopg.connect(url, autocommit=True) as holder:
        schema = first.db.describe()["schema"]
        holder.execute("BEGIN")
        # Writers may read meta but not write it: each stops at the end of its transaction.
        holder.execute(f'LOCK TABLE "{schema}".meta IN EXCLUSIVE MODE')
        threads = [threading.Thread(target=update, args=(first, "2022-03-01-a.md")),
                   threading.Thread(target=update, args=(second, "2022-03-02-b.md"))]
        for t in threads:
            t.start()

        def both_waiting() -> bool:
            # Asked on a connection of its own: one inside a transaction sees
            # pg_stat_activity as it was when the transaction began.
            with psycopg.connect(url, autocommit=True) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'").fetchone()
            return row is not None and row[0] == 2

        wait_for(both_waiting, timeout=20)
        holder.execute("COMMIT")
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    shown = [p.rel for p in first.views().all if p.guid == "urn:one"]
    assert shown == ["2022-03-01-a.md"]
    assert first.views().total() == 1
    first.close()
    second.close()
