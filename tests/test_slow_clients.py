"""`feedsvc serve` alone (the quick start, no nginx in front) is not starved by
slow clients (issue 15, finding 11): 100 connections sending their headers a
byte a second do not delay a normal request by more than a second.

Under gunicorn's gthread workers each of them took a thread as soon as its
first byte came, and 20 of them delayed a normal request by 26 s. The figure
is in docs/SECURITY.md (S12); bench/http_bench.py --slow-clients measures it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import requests
from slow_clients import SlowClients, latencies
from support import running

from feedsvc.server import HEADER_TIMEOUT, SETTINGS

FEED = "/feeds/kunmingribao.rss"


def test_100_slow_clients_do_not_delay_a_normal_request(site: Path) -> None:
    with running(site, workers=2, threads=8) as server:
        def normal_requests() -> None:
            # A new connection each time, as a feed reader polling opens one: one
            # feed answered from the replay cache, one request that needs a thread.
            for path in (FEED, "/healthz"):
                reply = requests.get(server.url + path, timeout=30)
                assert reply.status_code == 200

        before = latencies(normal_requests, 10)
        with SlowClients(("127.0.0.1", server.port), FEED, count=100) as slow:
            latencies(normal_requests, 2, pause=1.5)   # every slow client has sent bytes by now
            during = latencies(normal_requests, 10)
            statuses = slow.finish()
        after = latencies(normal_requests, 10)
    # Against the slowest answer without slow clients, measured in the same run
    # on the same (possibly busy) machine, before and after.
    baseline = max(before + after)
    assert max(during) <= baseline + 1.0, (during, before, after)
    # They were real requests in the middle of their headers, kept open: once
    # complete, each gets its answer.
    assert statuses == [200] * 100, statuses


# -- deadlines on a connection's headers (docs/SECURITY.md S3) ---------------------------
def _closed_after(sock: socket.socket, start: float, limit: float) -> float:
    """Seconds from `start` (monotonic) until the server closes `sock` (we
    read EOF or a reset); fails when it is still open `limit` s after start."""
    sock.settimeout(max(0.1, start + limit - time.monotonic()))
    try:
        while sock.recv(4096):
            pass                       # an answer (a 408 or the like) before the close
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {limit:g} s") from None
    return time.monotonic() - start


def _trickle(sock: socket.socket, stop: threading.Event) -> None:
    request = b"GET " + FEED.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 400
    for byte in request:
        if stop.wait(1.0):
            return
        with contextlib.suppress(OSError):
            sock.sendall(bytes([byte]))


def test_connections_that_never_finish_their_headers_are_closed_at_the_deadline(
        site: Path) -> None:
    """An idle connection and one trickling its headers a byte a second are
    both closed HEADER_TIMEOUT s after they opened (before: the idle one was
    still open after 75 s), while one whose headers come in time is answered."""
    with running(site, workers=1, threads=4) as server:
        address = ("127.0.0.1", server.port)
        idle, trickling, in_time = (socket.create_connection(address) for _ in range(3))
        stop = threading.Event()
        dripper = threading.Thread(target=_trickle, args=(trickling, stop), daemon=True)
        dripper.start()
        start = time.monotonic()
        in_time.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(2)
        in_time.sendall(b"Connection: close\r\n\r\n")
        in_time.settimeout(30)
        answer = in_time.recv(64)
        try:
            idle_took = _closed_after(idle, start, HEADER_TIMEOUT + 15)
            trickling_took = _closed_after(trickling, start, HEADER_TIMEOUT + 15)
        finally:
            stop.set()
            for sock in (idle, trickling, in_time):
                sock.close()
        still_serving = requests.get(server.url + FEED, timeout=30).status_code
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert HEADER_TIMEOUT - 1 <= idle_took < HEADER_TIMEOUT + 15
    assert HEADER_TIMEOUT - 1 <= trickling_took < HEADER_TIMEOUT + 15
    assert still_serving == 200


def test_a_kept_alive_connection_is_closed_after_keepalive_seconds_idle(site: Path) -> None:
    """After its first answer, a connection waits at most `keepalive` seconds
    for the next request's headers (gunicorn's own timer, relied on above)."""
    with running(site, workers=1, threads=4) as server, \
            socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(30)
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
        took = _closed_after(sock, time.monotonic(), SETTINGS["keepalive"] + 15)
    assert SETTINGS["keepalive"] - 1 <= took < SETTINGS["keepalive"] + 15
