"""Issue 15, finding 6: the per-fetch deadline holds whatever the peer does —
a body, headers or a TLS handshake dripped a byte at a time (real slow
sockets on loopback, tests/slow_peer.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_peer import dns_peer, resolver, silent_port_53
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


# -- name resolution: a name server that never answers (tests/dns_peer.py) ------------
@pytest.mark.parametrize("allow_private", [True, False], ids=["connect", "private-check"])
def test_a_name_server_that_never_answers_cannot_hold_a_fetch_past_its_deadline(
        allow_private: bool) -> None:
    # allow_private=False resolves first for the private-address check; True
    # resolves only to connect. Either lookup must end at the deadline.
    with dns_peer(answer=None) as dns:
        fetcher = Fetcher(LIMITS, allow_private=allow_private, resolver=resolver(dns.port))
        start = time.monotonic()
        with pytest.raises(FetchError) as caught:
            fetcher.get("http://feeds.hanging-dns.test/rss.xml")
        took = time.monotonic() - start
        fetcher.close()
    assert str(caught.value) == f"took longer than {DEADLINE:g} s"
    assert DEADLINE - 0.1 <= took < WITHIN
    assert dns.queries and set(dns.queries) == {"feeds.hanging-dns.test"}


def test_a_name_is_fetched_from_the_address_the_resolver_found(up: Upstream) -> None:
    """The resolver hook is the one the connection uses; the Host header keeps the name."""
    port = int(up.url.rsplit(":", 1)[1])
    with dns_peer(answer="127.0.0.1") as dns:
        fetcher = Fetcher(LIMITS, resolver=resolver(dns.port))
        fetched = fetcher.get(f"http://feeds.answering-dns.test:{port}/rss.xml")
        fetcher.close()
    assert fetched.status == 200 and b"<rss" in fetched.body
    assert dns.queries == ["feeds.answering-dns.test"]
    assert up.seen("/rss.xml")[-1].headers["Host"] == f"feeds.answering-dns.test:{port}"


CHILD = f"""
import time
from feedsvc.errors import FetchError
from feedsvc.upstream.fetch import Fetcher, Limits
fetcher = Fetcher(Limits(connect_timeout=2, read_timeout=1.5, deadline={DEADLINE}, retries=2,
                         backoff=0))
start = time.monotonic()
try:
    fetcher.get("http://feeds.hanging-dns.test/rss.xml")
    error = "no error"
except FetchError as e:
    error = str(e)
print(f"{{time.monotonic() - start:.3f}} {{error}}")
"""


def test_the_system_resolver_hanging_cannot_hold_a_fetch_past_its_deadline(
        tmp_path: Path) -> None:
    """No hook: getaddrinfo(3) itself, in a mount namespace of our own whose
    /etc/resolv.conf names only a silent server and waits 30 s for it."""
    import subprocess
    import sys

    with silent_port_53() as dns:
        conf = tmp_path / "resolv.conf"
        conf.write_text(f"nameserver {dns.sock.getsockname()[0]}\noptions timeout:30 attempts:1\n")
        done = subprocess.run(
            ["unshare", "-m", "--", "sh", "-c",
             'mount --bind "$1" /etc/resolv.conf && exec "$2" -c "$3"', "sh",
             str(conf), sys.executable, CHILD],
            capture_output=True, text=True, timeout=90, check=False)
        queried = list(dns.queries)
    if done.returncode != 0 and "mount" in done.stderr and not done.stdout:
        pytest.skip(f"cannot make a mount namespace (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
    took, error = done.stdout.strip().split(" ", 1)
    assert error == f"took longer than {DEADLINE:g} s", done.stderr
    assert DEADLINE - 0.1 <= float(took) < WITHIN
    assert "feeds.hanging-dns.test" in queried      # the lookup did go to our server
