"""Issue 15, finding 6: the per-fetch deadline holds whatever the peer does —
a body, headers or a TLS handshake dripped a byte at a time (real slow
sockets on loopback, tests/slow_peer.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slow_peer import slow_peer
from support import make_site
from upstream_support import Route, Upstream, upstream

from feedsvc.config import load_config
from feedsvc.errors import FetchError
from feedsvc.upstream.collector import Collector
from feedsvc.upstream.fetch import Fetcher, Limits

DEADLINE = 2.0
# Each byte comes well within the read timeout: only the deadline can stop it.
LIMITS = Limits(connect_timeout=2, read_timeout=1.5, deadline=DEADLINE, retries=2, backoff=0)
# Generous: the machine is shared; the peer itself gives up after 30 s.
WITHIN = DEADLINE + 6


@pytest.fixture
def tls_cert(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[Path, Path]:
    from slow_peer import self_signed

    cert = self_signed(tmp_path_factory.mktemp("tls"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert[0]))   # trust it, for this test only
    return cert


def timed_fetch(url: str) -> tuple[float, str]:
    fetcher = Fetcher(LIMITS)
    start = time.monotonic()
    try:
        fetcher.get(url)
    except FetchError as e:
        return time.monotonic() - start, str(e)
    finally:
        fetcher.close()
    return time.monotonic() - start, "no error"


@pytest.mark.parametrize("mode", ["body", "headers", "tls-handshake"])
def test_a_dripping_peer_cannot_hold_a_fetch_past_its_deadline(mode: str) -> None:
    with slow_peer(mode) as peer:
        took, error = timed_fetch(peer.url)
    assert error == f"took longer than {DEADLINE:g} s"
    assert DEADLINE - 0.1 <= took < WITHIN


def test_a_dripping_body_over_tls_is_cut_at_the_deadline(tls_cert: tuple[Path, Path]) -> None:
    with slow_peer("tls-body", cert=tls_cert) as peer:
        took, error = timed_fetch(peer.url)
    assert error == f"took longer than {DEADLINE:g} s", error
    assert took < WITHIN


def test_the_deadline_covers_retries_and_redirect_hops() -> None:
    with upstream() as up, slow_peer("body") as peer:
        up.routes["/hop"] = Route(status=302, location=peer.url)
        took, error = timed_fetch(up.url + "/hop")
    assert error == f"took longer than {DEADLINE:g} s" and took < WITHIN
    assert peer.connections <= 3      # the retries after the cut are cut at once


def test_a_fast_peer_is_unaffected_and_the_watchdog_leaves_nothing_behind() -> None:
    import threading

    with upstream() as up:
        up.routes["/rss.xml"] = Route.fixture("rss.xml")
        fetcher = Fetcher(LIMITS)
        before = threading.active_count()
        for _ in range(20):
            assert fetcher.get(up.url + "/rss.xml").status == 200
        fetcher.close()
    time.sleep(0.2)
    assert threading.active_count() <= before     # every watchdog timer cancelled


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/rss.xml"] = Route.fixture("rss.xml")
        yield server


def test_a_dripping_source_does_not_keep_the_next_from_being_collected(
        tmp_path: Path, up: Upstream) -> None:
    with slow_peer("body") as peer:
        cats = {"kunmingribao": {"title": "昆明日报新闻", "sources": [peer.url, up.url + "/rss.xml"]}}
        config = load_config(make_site(tmp_path / "site", config={"categories": cats}))
        collector = Collector(config, fetcher=Fetcher(LIMITS),
                              clock=lambda: dt.datetime(2026, 1, 10, tzinfo=dt.UTC))
        start = time.monotonic()
        slow, fast = collector.run(collector.sources())
        took = time.monotonic() - start
    assert slow.error == f"took longer than {DEADLINE:g} s"
    assert fast.error is None and fast.new == 3
    assert took < WITHIN + 2
