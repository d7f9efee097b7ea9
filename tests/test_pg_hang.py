"""PostgreSQL that hangs instead of failing (issue 12's "PostgreSQL
unreachable … mid-run"): a partition or a frozen server neither answers nor
fails. Through a proxy of the tests' own (tcp_proxy.py, hang()): connections
are accepted and held, the bytes of those open go nowhere. Every wait of
feedsvc on PostgreSQL is bounded (index/pg.py): a request answers what it
last served, or 503 with Retry-After, within seconds; the writer gives up and
says why; a leader cut off loses the lock and a standby takes over; once the
proxy forwards again each recovers by itself and serves what changed meanwhile."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import feedparser
import psycopg
import requests
import yaml
from support import Server, make_site, new_pg_database, post, running, wait_for
from tcp_proxy import TcpProxy

from feedsvc.index.pg import write_key

POSTS = {f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800")
         for d in range(1, 6)}
FEED = "/feeds/kunmingribao.atom"
BOUND = 15.0        # generous; the README reports the real figure (READ_TIMEOUT, 5 s)


def titles(body: bytes) -> list[str]:
    return [e.title for e in feedparser.parse(body).entries]


def on_index(cfg: Path, url: str, *, state: str = "state") -> Path:
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["index"] = {"type": "postgres", "url": url}
    data["state_dir"] = str(cfg.parent / state)
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def via(url: str, proxy: TcpProxy) -> str:
    return url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def timed(server: Server, path: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    resp = requests.get(server.url + path, timeout=60)
    return resp, time.monotonic() - started


def status(server: Server) -> dict[str, Any]:
    resp, took = timed(server, "/status")
    assert resp.status_code == 200 and took < BOUND, (resp.status_code, took)
    info: dict[str, Any] = resp.json()
    return info


def hung(message: str | None) -> bool:
    """The cause as /status gives it for a silent PostgreSQL: a statement given
    up on its deadline, or a connection attempt that timed out."""
    return bool(message) and "PostgreSQL at" in str(message) and (
        "no answer in" in str(message) or "timeout expired" in str(message))


def during_hang(server: Server, seconds: float) -> list[tuple[int, float]]:
    """(status, seconds) of every request four clients made one after another for `seconds`."""
    end = time.monotonic() + seconds

    def client() -> list[tuple[int, float]]:
        made = []
        while time.monotonic() < end:
            resp, took = timed(server, FEED)
            made.append((resp.status_code, took))
        return made

    with ThreadPoolExecutor(4) as pool:
        return [r for rs in pool.map(lambda _: client(), range(4)) for r in rs]


def write_lock_holders(url: str, key: int) -> int:
    """Sessions holding or waiting for the advisory lock `key` (pg.write_key)."""
    key &= 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                           " AND classid = %s AND objid = %s AND objsubid = 1",
                           [key >> 32, key & 0xFFFF_FFFF]).fetchone()
    return int(row[0]) if row else 0


def test_a_hanging_postgres_serves_what_it_had_names_the_cause_and_recovers(
        tmp_path: Path) -> None:
    """The leader's writer is caught inside its transaction: the test holds the
    index's write lock (as another writer would), a change comes, the writer
    waits for the lock, then PostgreSQL goes silent and the lock is let go."""
    url = new_pg_database()
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        cfg = on_index(make_site(tmp_path / "site", POSTS), via(url, proxy))
        with running(cfg) as server:
            before = server.get(FEED)
            assert before.status_code == 200
            key = write_key(status(server)["index"]["schema"])
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("SELECT pg_advisory_lock(%s)", [key])
                (cfg.parent / "_posts" / "2022-03-09-during.md").write_text(
                    post("Written during the hang", "2022-03-09 10:00:00 +0800"),
                    encoding="utf-8")
                wait_for(lambda: write_lock_holders(url, key) == 2, timeout=30)
                proxy.hang()
                hung_at = time.monotonic()
            # The lock is free; what the server sends the writer goes nowhere.
            tooks = []
            for _ in range(4):      # the statement on a held connection, then at once
                during, took = timed(server, FEED)
                tooks.append(took)
                assert took < BOUND, took
                assert during.status_code == 200 and during.content == before.content
                assert during.headers["ETag"] == before.headers["ETag"]
            # Four clients at once for 12 s: a retry (a request that waits to find
            # out whether PostgreSQL is back) holds up no other request.
            steady = during_hang(server, 12.0)
            assert all(code == 200 for code, _ in steady), steady
            waits = sorted(took for _, took in steady)
            assert waits[-1] < BOUND, waits
            # A document this process never made: 503 with Retry-After, never a 500.
            never, took = timed(server, "/feeds/all.json")
            assert never.status_code == 503 and never.headers["Retry-After"] and took < BOUND
            ready, took = timed(server, "/readyz")
            assert ready.status_code == 503 and took < BOUND
            assert server.get("/healthz").status_code == 200
            assert hung(status(server)["index"].get("error")), status(server)["index"]
            # The server ends the silent writer's transaction, and frees the lock
            # for other writers (idle_in_transaction_session_timeout)…
            wait_for(lambda: write_lock_holders(url, key) == 0, timeout=40, interval=0.5)
            freed = time.monotonic() - hung_at
            # … and the writer gives up its statement (WRITE_TIMEOUT) and says why.
            wait_for(lambda: "no answer in 30 s" in str(status(server)["index"]["last_error"]),
                     timeout=60, interval=1)
            assert hung(status(server)["index"]["last_error"])
            gave_up = time.monotonic() - hung_at
            print(f"write lock freed after {freed:.1f} s, the writer gave up after"
                  f" {gave_up:.1f} s")
            print(f"{len(waits)} requests in 12 s: median {statistics.median(waits):.3f} s,"
                  f" {sum(w > 1 for w in waits)} over 1 s, the longest {waits[-1]:.1f} s")
            print("feed during the hang answered in", ", ".join(f"{t:.1f} s" for t in tooks))
            proxy.forward()
            wait_for(lambda: "Written during the hang" in titles(server.get(FEED).content),
                     timeout=60, interval=0.5)
            index = status(server)["index"]
            assert index["ready"] is True and index["last_error"] is None
            assert titles(server.get(FEED).content)[:2] == ["Written during the hang", "P5"]
            log = server.output()
    # Said when the cause changes (a connection attempt timed out, a statement
    # unanswered), never for anything but the hang (a connection the proxy cut
    # when it forwarded again, idle through the hang, is replaced at its first use).
    said = [line for line in log.splitlines() if "cannot update the post index" in line]
    assert 1 <= len(said) <= 3, log
    assert all("no answer in" in line or "timeout expired" in line for line in said), log
    assert log.count("the post index is updated again") == 1, log


def test_a_leader_cut_off_by_a_hang_loses_the_lock_and_a_standby_takes_over(
        tmp_path: Path) -> None:
    """The leader reaches PostgreSQL through the proxy, the standby directly.
    The server ends the leader's silent session (idle_session_timeout), which
    frees the advisory lock; the leader's own check gives up first."""
    url = new_pg_database()
    site = make_site(tmp_path / "site", POSTS)
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        leader_cfg = on_index(site, via(url, proxy))
        standby_cfg = site.parent / "standby.yaml"
        standby_cfg.write_text(site.read_text(encoding="utf-8"), encoding="utf-8")
        on_index(standby_cfg, url, state="standby-state")
        with running(leader_cfg) as a:
            assert a.leads()
            with running(standby_cfg) as b:
                before = a.get(FEED)
                assert not b.leads() and b.get(FEED).content == before.content
                proxy.hang()
                hung_at = time.monotonic()
                during, took = timed(a, FEED)
                assert during.status_code == 200 and during.content == before.content
                assert took < BOUND, took
                wait_for(b.leads, timeout=30, interval=0.2)
                taken = time.monotonic() - hung_at
                # The old leader had stopped before the standby could start.
                worker = status(a)["worker"]
                assert not worker["is_leader"] and hung(worker["last_error"]), worker
                (site.parent / "_posts" / "2022-03-20-after.md").write_text(
                    post("After the takeover", "2022-03-20 10:00:00 +0800"), encoding="utf-8")
                wait_for(lambda: "After the takeover" in titles(b.get(FEED).content),
                         timeout=30, interval=0.5)
                proxy.forward()
                # The old leader reads the shared index again and stands by.
                wait_for(lambda: "After the takeover" in titles(a.get(FEED).content),
                         timeout=30, interval=0.5)
                assert a.get(FEED).headers["ETag"] == b.get(FEED).headers["ETag"]
                assert not a.leads() and b.leads()
                # Its tries reach PostgreSQL again (the lock is the standby's):
                # the cause of the lost lead is history, not a fault of now.
                wait_for(lambda: status(a)["worker"]["last_error"] is None, timeout=30)
                assert not a.leads()
                print(f"feed during the hang answered in {took:.1f} s,"
                      f" the standby led after {taken:.1f} s")
