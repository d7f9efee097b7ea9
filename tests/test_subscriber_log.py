"""The file nginx writes its subscriber lines to (deploy/nginx:
`access_log … feedsvc_subscribers buffer=64k flush=1s`), followed by a
running `feedsvc serve` through whatever happens to a log file: lines that
arrive in pieces, logrotate's rename and copytruncate, feedsvc down while
nginx goes on writing, a file that is not there yet. Here the test writes
the lines as nginx does; tests/test_nginx.py has a real nginx write them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_site, running, subscriber_stats, wait_for

FEED = "/feeds/kunmingribao.rss"
FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {n} subscribers; like FeedFetcher-Google)"


def nginx_line(path: str, user_agent: str, address: str = "203.0.113.5", *, status: str = "200",
               dest: str = "", when: float | None = None) -> str:
    """A line in deploy/nginx's feedsvc_subscribers format."""
    msec = f"{time.time() if when is None else when:.3f}"
    return "\t".join([msec, status, path, address, user_agent, dest]) + "\n"


def append(log: Path, text: str) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(text)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    log = tmp_path / "nginx" / "subscribers.log"
    log.parent.mkdir()
    log.write_text("")
    yield make_site(tmp_path / "site", fixture="site", config={"subscriber_log": str(log)}), log


def counts(config: Path, path: str = FEED) -> dict[str, str]:
    return subscriber_stats(config).get(path, {})


def test_lines_are_counted_including_one_written_in_two_pieces(site: tuple[Path, Path]) -> None:
    config, log = site
    with running(config):
        append(log, nginx_line(FEED, FEEDLY.format(n=40))
               + nginx_line(FEED, "Reader One/1.0", "198.51.100.1")
               + nginx_line(FEED, "Reader One/1.0", "198.51.100.1")     # the same reader again
               + nginx_line(FEED, "Mozilla/5.0", "198.51.100.2", dest="document")  # a page view
               + nginx_line(FEED, "Reader Gone/1.0", "198.51.100.3", status="404")
               + "not a line of ours\n")
        half = nginx_line(FEED, "Reader Two/2.0", "198.51.100.4")
        append(log, half[:20])
        wait_for(lambda: counts(config).get("Feedly") == "40", 30, 0.5)
        append(log, half[20:])
        row = wait_for(lambda: (r := counts(config)).get("direct readers") == "2" and r, 30, 0.5)
    assert row["total"] == "42"


def test_a_rotated_file_is_followed_and_its_last_lines_still_read(site: tuple[Path, Path]) -> None:
    config, log = site
    with running(config):
        append(log, nginx_line(FEED, "Reader One/1.0", "198.51.100.1"))
        wait_for(lambda: counts(config).get("direct readers") == "1", 30, 0.5)
        # logrotate renames the file and makes a new one; nginx writes to the
        # old one until it reopens its logs (USR1).
        log.rename(log.with_name("subscribers.log.1"))
        log.write_text("")
        append(log.with_name("subscribers.log.1"), nginx_line(FEED, "Reader Two/2.0", "198.51.100.2"))
        append(log, nginx_line(FEED, "Reader Three/3.0", "198.51.100.3"))
        wait_for(lambda: counts(config).get("direct readers") == "3", 30, 0.5)


def test_a_file_cut_short_in_place_is_read_from_its_start(site: tuple[Path, Path]) -> None:
    config, log = site
    with running(config):
        append(log, nginx_line(FEED, "Reader One/1.0", "198.51.100.1") * 3)
        wait_for(lambda: counts(config).get("direct readers") == "1", 30, 0.5)
        os.truncate(log, 0)                 # logrotate's copytruncate
        append(log, nginx_line(FEED, "Reader Two/2.0", "198.51.100.2"))
        wait_for(lambda: counts(config).get("direct readers") == "2", 30, 0.5)


def test_lines_written_while_feedsvc_was_down_are_read_when_it_is_back(
        site: tuple[Path, Path]) -> None:
    config, log = site
    with running(config):
        append(log, nginx_line(FEED, FEEDLY.format(n=40)))
        wait_for(lambda: counts(config).get("Feedly") == "40", 30, 0.5)
    append(log, nginx_line(FEED, FEEDLY.format(n=55)) + nginx_line(FEED, "Reader One/1.0")
           # A line older than a day (feedsvc down that long) is not counted.
           + nginx_line("/feeds/old.rss", "Reader Old/1.0", when=time.time() - 25 * 3600))
    with running(config) as server:
        row = wait_for(lambda: (r := counts(config)).get("Feedly") == "55" and r, 30, 0.5)
        assert row["direct readers"] == "1"
        # Read from where it got to, not from the start: the 40 is not read again.
        assert "from byte 0" not in server.output()
    assert "/feeds/old.rss" not in subscriber_stats(config)


def test_a_file_that_is_not_there_yet_is_read_once_nginx_makes_it(tmp_path: Path) -> None:
    log = tmp_path / "nginx" / "subscribers.log"
    config = make_site(tmp_path / "site", fixture="site", config={"subscriber_log": str(log)})
    with running(config) as server:
        wait_for(lambda: "cannot read it" in server.output(), 30, 0.2)
        log.parent.mkdir()
        append(log, nginx_line(FEED, FEEDLY.format(n=7)))
        wait_for(lambda: counts(config).get("Feedly") == "7", 30, 0.5)
        assert server.output().count("cannot read it") == 1    # said once, not every second
        assert server.get(FEED).status_code == 200


def test_two_workers_read_the_file_once(site: tuple[Path, Path]) -> None:
    """One worker reads (a lock in state_dir); the counts are the same as with one."""
    config, log = site
    with running(config, workers=2) as server:
        append(log, nginx_line(FEED, FEEDLY.format(n=12)) + nginx_line(FEED, "Reader One/1.0"))
        wait_for(lambda: counts(config).get("Feedly") == "12", 30, 0.5)
        assert server.output().count("is the reader of the subscriber log") == 1
    assert counts(config)["total"] == "13"



def test_the_udp_form_of_older_configurations_still_counts(tmp_path: Path) -> None:
    """`subscriber_log: 127.0.0.1:PORT` with nginx's `access_log syslog:…`: a
    datagram per request, in the format deploy/nginx shipped before (no msec)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_site(tmp_path / "site", fixture="site",
                       config={"subscriber_log": f"127.0.0.1:{port}"})
    with running(config), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nginx:
        def send() -> bool:
            for ua in (FEEDLY.format(n=9), "Reader One/1.0"):
                fields = ["200", FEED, "198.51.100.1", ua, ""]
                nginx.sendto(("<190>Dec  2 14:00:00 feedsvc: " + "\t".join(fields)).encode(),
                             ("127.0.0.1", port))
            return counts(config).get("total") == "10"
        # Sent again until counted: a datagram sent before the worker binds is lost.
        wait_for(send, 30, 0.5)
