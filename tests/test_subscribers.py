"""Subscriber counts: a log of User-Agents (aggregators with changing counts,
repeats, direct readers, a proxy, a client that forges X-Forwarded-For)
replayed against a real `feedsvc serve` with two workers; the numbers in the
table `feedsvc stats` prints, in the admin page's SVG, and in a real
Chromium that opens that page (screenshot: docs/subscribers.png with
FEEDSVC_SCREENSHOTS=1)."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from lxml import html
from support import REPO, Server, make_site, running, wait_for

from feedsvc.subscribers import FLUSH_SECONDS, Aggregator, TrustedProxies, parse_user_agent

TOKEN = "correct-horse-battery-staple"
RSS, ATOM, TAG = "/feeds/kunmingribao.rss", "/feeds/kunmingribao.atom", "/tags/%E6%98%86%E6%98%8E.rss"
CHROMIUM = os.environ.get("FEEDSVC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

AGENTS = [
    ("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 131 subscribers; like FeedFetcher-Google)",
     Aggregator("Feedly", "", 131)),
    ("Feedbin feed-id:1373711 - 24 subscribers", Aggregator("Feedbin", "1373711", 24)),
    ("NewsBlur Feed Fetcher - 42 subscribers - https://www.newsblur.com/site/6167340/x "
     "(Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_3) AppleWebKit/537.36 Safari/537.36)",
     Aggregator("NewsBlur", "6167340", 42)),
    ("Mozilla/5.0 (compatible; Inoreader/1.0; +http://www.inoreader.com/feed-fetcher; "
     "7 subscribers; )", Aggregator("Inoreader", "", 7)),
    ("Mozilla/5.0 (compatible; theoldreader.com; 5 subscribers; feed-id=5a1b2c3d4e)",
     Aggregator("The Old Reader", "5a1b2c3d4e", 5)),
    ("BazQux/2.4 (+https://bazqux.com/fetcher; 3 subscribers)", Aggregator("BazQux", "", 3)),
    ("Superfeedr bot/2.0 http://superfeedr.com - 1 subscribers", Aggregator("Superfeedr bot", "", 1)),
    ("NetNewsWire (RSS Reader; https://netnewswire.com/)", None),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36", None),
    ("curl/8.5.0", None),
]


@pytest.mark.parametrize(("ua", "expected"), AGENTS)
def test_user_agents(ua: str, expected: Aggregator | None) -> None:
    assert parse_user_agent(ua) == expected


@pytest.mark.parametrize(("remote", "xff", "client"), [
    ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
    ("127.0.0.1", "6.6.6.6, 203.0.113.5", "203.0.113.5"),         # the client's own forgery is left
    ("127.0.0.1", "203.0.113.5, 10.0.0.2", "203.0.113.5"),        # two trusted hops
    ("198.51.100.9", "203.0.113.5", "198.51.100.9"),              # not a proxy of ours
    ("127.0.0.1", None, "127.0.0.1"),
    ("::1", "2001:db8::1", "2001:db8::1"),
])
def test_client_address(remote: str, xff: str | None, client: str) -> None:
    proxies = TrustedProxies(["127.0.0.1", "::1", "10.0.0.0/8"])
    assert proxies.client(remote, xff) == client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, index_backend: str) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("subscribers")
    config = make_site(root / "site", fixture="site", config={
        "admin_token": TOKEN, "trusted_proxies": ["127.0.0.1"]})
    with running(config, workers=2) as server:
        replay(server)
        yield server


def get(server: Server, path: str, ua: str, *, xff: str | None = None,
        source: str = "127.0.0.1") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10,
                                      source_address=(source, 0))
    headers = {"User-Agent": ua}
    if xff:
        headers["X-Forwarded-For"] = xff
    conn.request("GET", path, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def replay(server: Server) -> None:
    feedly = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; like FeedFetcher-Google)"
    log = [
        (RSS, feedly.format(131), None, "127.0.0.1"),
        (RSS, feedly.format(131), None, "127.0.0.1"),
        (RSS, feedly.format(135), None, "127.0.0.1"),           # the count changed: the latest wins
        (RSS, "Feedbin feed-id:1 - 24 subscribers", None, "127.0.0.1"),
        (RSS, "Feedbin feed-id:2 - 3 subscribers", None, "127.0.0.1"),   # another Feedbin feed
        (RSS, "Feedbin feed-id:1 - 25 subscribers", None, "127.0.0.1"),
        (ATOM, "NewsBlur Feed Fetcher - 10 subscribers - https://www.newsblur.com/site/9/x", None,
         "127.0.0.1"),
        (TAG, "Mozilla/5.0 (compatible; Inoreader/1.0; 7 subscribers; )", None, "127.0.0.1"),
        (TAG, "Mozilla/5.0 (compatible; theoldreader.com; 5 subscribers; feed-id=ab)", None,
         "127.0.0.1"),
    ]
    # Direct readers behind our proxy: three people, each polling three times.
    for who in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        log += [(RSS, "NetNewsWire (RSS Reader; https://netnewswire.com/)", who, "127.0.0.1")] * 3
    # The same person with another app is another reader.
    log.append((RSS, "Reeder/5.0", "203.0.113.1", "127.0.0.1"))
    # Not through our proxy: X-Forwarded-For is not believed, the address counts.
    for forged in ("198.51.100.1", "198.51.100.2"):
        log.append((RSS, "Reeder/5.0", forged, "127.0.0.2"))
    for path, ua, xff, source in log:
        assert get(server, path, ua, xff=xff, source=source) == 200
    # A browser's page view is not a subscriber.
    requests.get(server.url + RSS, headers={"Sec-Fetch-Dest": "document", "User-Agent": "Chrome"},
                 timeout=10)


EXPECTED = {RSS: {"Feedly": 135, "Feedbin": 28, "readers": 5, "total": 168},
            ATOM: {"NewsBlur": 10, "readers": 0, "total": 10},
            "/tags/昆明.rss": {"Inoreader": 7, "The Old Reader": 5, "readers": 0, "total": 12}}


def stats(server: Server) -> dict[str, dict[str, str]]:
    return stats_of(server.config)


def stats_of(config: Path, days: int = 30) -> dict[str, dict[str, str]]:
    """The table `feedsvc stats` prints, by feed path then column."""
    out = subprocess.run([sys.executable, "-m", "feedsvc", "stats", "--config", str(config),
                          "--days", str(days)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    if out.strip() == "no subscriber counts yet":
        return {}
    lines = out.splitlines()
    head = re.split(r"\s{2,}", lines[0].strip())
    return {cells[0]: dict(zip(head, cells, strict=True))
            for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}


def today(server: Server) -> str:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def test_feedsvc_stats_prints_the_counts(served: Server) -> None:
    def settled() -> dict[str, dict[str, str]] | None:
        table = stats(served)
        ok = all(int(table.get(p, {}).get("total", -1)) == e["total"] for p, e in EXPECTED.items())
        return table if ok else None

    table = wait_for(settled, 30, 0.5)
    for path, expected in EXPECTED.items():
        row = table[path]
        assert row["day"] == today(served)
        assert int(row["direct readers"]) == expected["readers"]
        for name, n in expected.items():
            if name not in ("readers", "total"):
                assert int(row[name]) == n, (path, name)


def test_a_reader_polling_again_is_the_same_reader(served: Server) -> None:
    # Written once, each worker has read the day's salt and hashes in the
    # request itself: the same hash as the write made for its first poll.
    wait_for(lambda: int(stats(served).get(RSS, {}).get("total", 0)) == 168, 30, 0.5)
    for _ in range(3):
        for who in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            assert get(served, RSS, "NetNewsWire (RSS Reader; https://netnewswire.com/)",
                       xff=who) == 200
        time.sleep(FLUSH_SECONDS)
    time.sleep(FLUSH_SECONDS + 1)
    assert stats(served)[RSS]["direct readers"] == "5"


def test_the_admin_page_needs_the_token(served: Server) -> None:
    url = served.url + "/admin/subscribers"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong-token-of-some-length"},
                        timeout=10).status_code == 401
    assert requests.get(url, auth=("admin", "nope"), timeout=10).status_code == 401
    assert requests.get(url, auth=("admin", TOKEN), timeout=10).status_code == 200
    assert requests.get(url + "?days=7", headers=_bearer(), timeout=10).status_code == 400


def _bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_the_admin_page_charts_each_feed(served: Server) -> None:
    wait_for(lambda: int(stats(served).get(RSS, {}).get("total", 0)) == 168, 30, 0.5)
    for days in (30, 90):
        reply = requests.get(served.url + f"/admin/subscribers?days={days}", headers=_bearer(),
                             timeout=10)
        assert reply.headers["Cache-Control"] == "no-store"
        doc = html.fromstring(reply.content)
        assert not doc.xpath("//script")
        for path, expected in EXPECTED.items():
            section = doc.xpath(f'//section[@data-path="{path}"]')[0]
            bars = section.xpath(".//*[local-name()='rect'][@class='bar']")
            assert len(bars) == days
            assert bars[-1].get("data-day") == today(served)
            assert int(bars[-1].get("data-value")) == expected["total"]
            assert all(int(b.get("data-value")) == 0 for b in bars[:-1])
            assert section.xpath(".//span[@class='total']")[0].text == str(expected["total"])


def test_counts_survive_a_restart(served: Server) -> None:
    wait_for(lambda: int(stats(served).get(RSS, {}).get("total", 0)) == 168, 30, 0.5)
    with running(served.config) as again:
        page = requests.get(again.url + "/admin/subscribers", headers=_bearer(), timeout=10).text
        assert 'data-value="168"' in page


def test_no_admin_token_no_admin_page(tmp_path: Path) -> None:
    with running(make_site(tmp_path / "site", fixture="site")) as server:
        reply = requests.get(server.url + "/admin/subscribers", headers=_bearer(), timeout=10)
        assert reply.status_code == 404


@pytest.mark.browser
def test_the_admin_page_in_chromium(served: Server, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: scripts/test-deps installs it"
    from playwright.sync_api import sync_playwright

    wait_for(lambda: int(stats(served).get(RSS, {}).get("total", 0)) == 168, 30, 0.5)
    shots = REPO / "docs" if os.environ.get("FEEDSVC_SCREENSHOTS") else tmp_path
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(http_credentials={"username": "admin", "password": TOKEN},
                                      viewport={"width": 900, "height": 1000})
        page = context.new_page()
        assert page.goto(served.url + "/admin/subscribers?days=30").status == 200
        chart = page.locator(f'section[data-path="{RSS}"] svg')
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 60
        last = page.locator(f'section[data-path="{RSS}"] rect.bar').last
        assert last.get_attribute("data-value") == "168"
        assert last.bounding_box()["height"] > 50       # the tallest bar, drawn
        page.screenshot(path=str(shots / "subscribers.png"), full_page=True)
        browser.close()
