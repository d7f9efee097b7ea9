"""Subscriber counts on a PostgreSQL index (issues 12, 14): two instances
with state_dirs of their own record into one index and `feedsvc stats` on
either shows the combined counts (the latest of each aggregator, a reader
who polls both machines once: one salt for the cluster); PostgreSQL taken
away mid-run (through a proxy of the test's own) costs only the counts of
that interval, logged once and shown in /status, never a 500, and counting
resumes by itself."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import requests
from support import make_site, new_pg_database, running, wait_for
from tcp_proxy import TcpProxy
from test_subscribers import RSS, TOKEN, get, stats_of

from feedsvc.config import load_config
from feedsvc.subscriber_store import SubscriberStore
from feedsvc.subscribers import FLUSH_SECONDS

FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; like FeedFetcher-Google)"
READER = "NetNewsWire (RSS Reader; https://netnewswire.com/)"


def instance(root: Path, name: str, index_url: str) -> Path:
    """A machine of the cluster: its own folder and state_dir, the shared index."""
    return make_site(root / name, fixture="site", config={
        "admin_token": TOKEN, "trusted_proxies": ["127.0.0.1"],
        "index": {"type": "postgres", "url": index_url}})


def today() -> str:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def bar_today(url: str) -> str:
    page = requests.get(url + "/admin/subscribers", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10).text
    section = page.split(f'data-path="{RSS}"', 1)[1]
    return section.split(f'data-day="{today()}" data-value="', 1)[1].split('"', 1)[0]


def test_two_instances_on_one_index_see_the_combined_counts(tmp_path: Path) -> None:
    url = new_pg_database()
    a_cfg, b_cfg = instance(tmp_path, "a", url), instance(tmp_path, "b", url)
    assert load_config(a_cfg).state_dir != load_config(b_cfg).state_dir
    with running(a_cfg, workers=2) as a, running(b_cfg, workers=2) as b:
        log = [(a, FEEDLY.format(100), None), (a, "Feedbin feed-id:1 - 10 subscribers", None),
               (a, READER, "203.0.113.1"), (a, READER, "203.0.113.2"),
               # Later, on the other machine: a newer Feedly count, another Feedbin
               # feed, the same reader again (one reader), and one more reader.
               (b, FEEDLY.format(120), None), (b, "Feedbin feed-id:2 - 5 subscribers", None),
               (b, READER, "203.0.113.1"), (b, READER, "203.0.113.3")]
        for server, ua, xff in log:
            assert get(server, RSS, ua, xff=xff) == 200
            time.sleep(0.01)            # each count later than the one before

        def combined() -> dict[str, str] | None:
            row = stats_of(a_cfg).get(RSS)
            return row if row and row["total"] == "138" else None

        row = wait_for(combined, 30, 0.5)
        assert (row["Feedly"], row["Feedbin"], row["direct readers"]) == ("120", "15", "3")
        assert stats_of(b_cfg) == stats_of(a_cfg)
        assert bar_today(a.url) == bar_today(b.url) == "138"
    with psycopg.connect(url) as conn:
        salts = conn.execute("SELECT count(*) FROM feedsvc_state.subscriber_salts WHERE day = %s",
                             [today()]).fetchone()
    assert salts == (1,)
    # Neither machine keeps a file of counts of its own.
    assert not list(tmp_path.glob("*/.feedsvc/subscribers*"))


def test_an_older_count_written_last_does_not_win(tmp_path: Path) -> None:
    url = new_pg_database()
    a = SubscriberStore(load_config(instance(tmp_path, "a", url)))
    b = SubscriberStore(load_config(instance(tmp_path, "b", url)))
    key = ("2026-11-21", "Feedly", "", RSS)
    b.add({key: (120, 1763712100.0)}, [])
    a.add({key: (100, 1763712050.0)}, [])     # seen earlier, written later (a slower flush)
    assert [dict(c.aggregators) for c in a.days("2026-11-21")] == [{"Feedly": 120}]
    assert a.salt("2026-11-21") == b.salt("2026-11-21")


def test_postgres_lost_mid_run_costs_only_that_interval(tmp_path: Path) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    port = proxy.port
    cfg = instance(tmp_path, "site", new_pg_database().replace("127.0.0.1:5432",
                                                               f"127.0.0.1:{port}"))
    with running(cfg) as server:
        assert get(server, RSS, FEEDLY.format(50)) == 200
        wait_for(lambda: stats_of(cfg).get(RSS, {}).get("Feedly") == "50", 30, 0.5)
        proxy.close()                   # every connection cut, nothing listening
        for i in range(5):
            started = time.monotonic()
            # What it has, it serves; what it cannot read is 503; never a 500.
            assert get(server, RSS, FEEDLY.format(60 + i)) in (200, 503)
            assert get(server, RSS, READER, xff=f"198.51.100.{i}") in (200, 503)
            assert time.monotonic() - started < 2
        assert server.get("/admin/subscribers",
                          headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 503
        out = subprocess.run([sys.executable, "-m", "feedsvc", "stats", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "cannot read the subscriber counts" in out.stderr
        time.sleep(2 * FLUSH_SECONDS + 1)   # every write of the outage has failed
        writes = server.get("/status").json()["state_writes"]
        assert not writes["ok"]
        assert "index schema feedsvc_state" in [f["file"] for f in writes["failing"]]
        with TcpProxy(("127.0.0.1", 5432), port=port):
            wait_for(lambda: get(server, RSS, FEEDLY.format(70)) == 200, 30, 0.5)
            assert get(server, RSS, READER, xff="203.0.113.9") == 200

            def resumed() -> dict[str, str] | None:
                row = stats_of(cfg).get(RSS)
                return row if row and row["Feedly"] == "70" else None

            row = wait_for(resumed, 30, 0.5)
            assert row["direct readers"] == "1"     # the outage's readers were lost, only they
            wait_for(lambda: "subscriber counts written again" in server.output(), 10)
            assert server.get("/status").json()["state_writes"] == {"ok": True, "failing": []}
        log = server.output()
    assert log.count("subscriber counts not written (") == 1     # once per outage, with its cause
    assert "Traceback" not in log
