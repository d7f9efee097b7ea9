"""Sources fetched in parallel, politely per host; `feedsvc collect` by hand
says when the server is collecting and what it stored."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import running, wait_for
from test_upstream import FAST, NOW, site_with
from upstream_support import Route, Upstream, upstream

from feedsvc.upstream.collector import Collector
from feedsvc.upstream.fetch import Fetcher
from feedsvc.upstream.polite import HostGate


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        for name in "abcdef":
            # Slow enough answers (0.3 s, under the tests' 0.5 s read timeout) to overlap.
            server.routes[f"/{name}.xml"] = Route(
                Route.fixture("rss.xml").body.replace(b"kmrb-", f"{name}-".encode())
                .replace(b"/kunming/", f"/{name}/".encode()), delay=0.3)
        yield server


def test_sources_are_fetched_in_parallel_within_the_per_host_limit(tmp_path: Path,
                                                                  up: Upstream) -> None:
    hosts = ["127.0.0.1", "localhost"]
    sources = [up.url.replace("127.0.0.1", hosts[i % 2]) + f"/{n}.xml"
               for i, n in enumerate("abcdef")]
    config = site_with(tmp_path, {"kunmingribao": sources})
    collector = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
    collector.gate = HostGate(per_host=2, delay=0.0)
    results = collector.run(collector.sources())
    assert [r.error for r in results] == [None] * 6
    assert [r.url for r in results] == sources              # in config order
    peak = up.peak()
    assert set(peak) == set(hosts)
    assert all(n <= 2 for n in peak.values()), peak          # never more than the limit
    assert sum(peak.values()) >= 3, peak                     # but more than one at a time


def test_one_host_gets_its_limit_and_its_delay(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + f"/{n}.xml" for n in "abcd"]})
    collector = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
    collector.gate = HostGate(per_host=1, delay=0.5)
    start = time.monotonic()
    assert all(r.error is None for r in collector.run(collector.sources()))
    assert up.peak() == {"127.0.0.1": 1}
    # Starts at least 0.5 s apart: three gaps at the least (a slow machine only adds).
    assert time.monotonic() - start >= 1.5


def test_host_gate_never_lets_more_than_the_limit_in() -> None:
    gate = HostGate(per_host=2, delay=0.05)
    inside, peak = [0], [0]
    lock = threading.Lock()

    def visit(url: str) -> None:
        with gate.turn(url):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.1)
            with lock:
                inside[0] -= 1

    start = time.monotonic()
    threads = [threading.Thread(target=visit, args=("https://Paper.example/x",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2
    assert time.monotonic() - start >= 7 * 0.05       # eight starts, 0.05 s apart at the least


def test_collect_by_hand_says_the_server_is_collecting(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/a.xml"]})
    with running(config.path):
        # The server leads and collects the source itself.
        wait_for(lambda: any(s.status == 200 for s in up.seen("/a.xml")), timeout=30)
        wait_for(lambda: len(list(config.posts_dir.rglob("*.md"))) == 3, timeout=30)
        time.sleep(0.5)
        run = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                              str(config.path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "note: feedsvc serve (pid " in run.stdout and "is collecting these sources" in run.stdout
    line = next(x for x in run.stdout.splitlines() if "/a.xml" in x)
    assert "not modified" in line and "the server last stored 3 post(s) at" in line
    assert "kunmingribao/2022-03-21-" in line


def test_collect_alone_says_nothing_of_a_server(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/a.xml"]})
    first = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                            str(config.path)], capture_output=True, text=True, timeout=120)
    again = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                            str(config.path)], capture_output=True, text=True, timeout=120)
    assert "note:" not in first.stdout + again.stdout
    assert "3 new" in first.stdout
    assert "not modified (last stored 3 post(s) at" in again.stdout
