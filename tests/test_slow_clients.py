"""`feedsvc serve` alone (the quick start, no nginx in front) is not starved by
slow clients (issue 15, finding 11): 100 connections sending their headers a
byte a second do not delay a normal request by more than a second.

Under gunicorn's gthread workers each of them took a thread as soon as its
first byte came, and 20 of them delayed a normal request by 26 s. The figure
is in docs/SECURITY.md (S12); bench/http_bench.py --slow-clients measures it."""

from __future__ import annotations

from pathlib import Path

import requests
from slow_clients import SlowClients, latencies
from support import running

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
