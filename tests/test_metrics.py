"""/metrics of a real `feedsvc serve` with two worker processes, read with
prometheus_client's own text parser: the counts are those of the requests
this test made, whichever worker answered them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import Server, make_site, running, wait_for
from upstream_support import Route, upstream

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(server: Server) -> Samples:
    reply = requests.get(server.url + "/metrics", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples[s.name].append((dict(s.labels), s.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for have, v in samples.get(name, []) if labels.items() <= have.items())


ADMIN_TOKEN = "admin-token-of-the-metrics-tests"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    root = tmp_path_factory.mktemp("metrics")
    with upstream() as up:
        up.routes["/secret-path/rss.xml?token=abc123"] = Route.fixture("rss.xml")
        host = up.url.replace("http://", "http://reader:hunter2@")
        source = {"url": f"{host}/secret-path/rss.xml?token=abc123", "every": "1h"}
        config = make_site(root / "site", fixture="site", config={"categories": {
            "kunmingribao": {"title": "昆明日报新闻", "sources": [source]},
            "caijing": {"title": "财经"}}, "admin_token": ADMIN_TOKEN})
        with running(config, workers=2) as server:
            # Every worker has booted and answered at least once.
            # The source has been collected and both workers serve the feed with
            # its posts, so that nothing changes under the counts below.
            wait_for(lambda: all(s.get("last_success") for s in _status(server)["sources"]), 60)
            wait_for(lambda: _settled(server), 60)
            yield server, up.url


def _status(server: Server) -> dict[str, Any]:
    # The admin view: it has the sources (docs/SECURITY.md S13).
    status: dict[str, Any] = requests.get(server.url + "/status", timeout=10,
                                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    return status


def _settled(server: Server) -> bool:
    answers = [_status(server) for _ in range(16)]
    pids = {a["worker"]["pid"] for a in answers}
    etags = {a["categories"]["kunmingribao"]["etags"]["atom"] for a in answers}
    return len(pids) == 2 and len(etags) == 1


def _workers(server: Server, tries: int = 12) -> set[int]:
    return {_status(server)["worker"]["pid"] for _ in range(tries)}


def test_counts_match_the_requests_made_across_two_workers(served: tuple[Server, str]) -> None:
    server, _ = served
    before = scrape(server)
    answered_by: set[int] = set()
    etag = requests.get(server.url + "/feeds/kunmingribao.atom", timeout=10).headers["ETag"]
    made = {("category", "rss", "200"): 7, ("category", "atom", "304"): 5,
            ("tag", "json", "200"): 3, ("all", "rss", "200"): 2, ("category", "html", "200"): 2,
            ("category", "other", "404"): 4, ("index", "-", "200"): 1}
    for _ in range(7):
        requests.get(server.url + "/feeds/kunmingribao.rss", timeout=10)   # new connection each
    for _ in range(5):
        assert requests.get(server.url + "/feeds/kunmingribao.atom", timeout=10,
                            headers={"If-None-Match": etag}).status_code == 304
    for _ in range(3):
        requests.get(server.url + "/tags/%E6%98%86%E6%98%8E.json", timeout=10)
    for _ in range(2):
        requests.get(server.url + "/feeds/all.rss", timeout=10)
        requests.get(server.url + "/feeds/caijing.rss", headers={"Sec-Fetch-Dest": "document"},
                     timeout=10)
    for _ in range(4):
        assert requests.get(server.url + "/feeds/kunmingribao.xml", timeout=10).status_code == 404
    requests.get(server.url + "/", timeout=10)
    # /status names the worker that answers: ask until both have answered
    # counted requests (gunicorn hands a new connection to whichever accepts).
    asked = 0
    while len(answered_by) < 2 and asked < 200:
        answered_by.add(_status(server)["worker"]["pid"])
        asked += 1
    after = scrape(server)
    assert len(answered_by) == 2, "one worker answered every request: nothing was summed"
    made[("category", "atom", "200")] = 1          # the request that fetched the ETag
    for (kind, fmt, status), count in made.items():
        got = (value(after, "feedsvc_requests_total", kind=kind, format=fmt, status=status)
               - value(before, "feedsvc_requests_total", kind=kind, format=fmt, status=status))
        assert got == count, (kind, fmt, status)
    statuses = (value(after, "feedsvc_requests_total", kind="status")
                - value(before, "feedsvc_requests_total", kind="status"))
    assert statuses == asked
    # The 304 share of feed requests, as README's PromQL computes it.
    def delta(**labels: str) -> float:
        return sum(value(after, "feedsvc_requests_total", kind=k, **labels)
                   - value(before, "feedsvc_requests_total", kind=k, **labels)
                   for k in ("category", "tag", "all"))
    feed_requests = sum(c for (k, _, _), c in made.items() if k in ("category", "tag", "all"))
    assert delta(status="304") / delta() == pytest.approx(5 / feed_requests)


def test_renders_caches_index_and_leader(served: tuple[Server, str]) -> None:
    server, _ = served
    for _ in range(3):
        requests.get(server.url + "/feeds/caijing.atom", timeout=10)
    samples = scrape(server)
    assert value(samples, "feedsvc_render_seconds_count", format="atom") >= 1
    assert value(samples, "feedsvc_render_seconds_sum") > 0
    assert value(samples, "feedsvc_cache_lookups_total", layer="replay", result="hit") >= 1
    assert value(samples, "feedsvc_cache_lookups_total", layer="memo", result="miss") >= 1
    status = requests.get(server.url + "/status", timeout=10).json()
    assert value(samples, "feedsvc_published_posts") == status["posts"]
    assert value(samples, "feedsvc_skipped_files") == len(status["skipped"])
    assert value(samples, "feedsvc_index_posts") >= status["posts"]
    assert value(samples, "feedsvc_config_error") == 0
    leaders = wait_for(lambda: [(labels, v) for labels, v in scrape(server)["feedsvc_leader"]
                                if v == 1], 15)
    assert len(leaders) == 1 and leaders[0][0]["pid"] == str(status["worker"]["leader_pid"])


def test_sources_are_labelled_by_host_never_by_url(served: tuple[Server, str]) -> None:
    server, up_url = served
    samples = wait_for(lambda: (s := scrape(server)) and
                       value(s, "feedsvc_source_fetches_total") >= 1 and s, 30)
    assert value(samples, "feedsvc_source_fetches_total", category="kunmingribao",
                 host="127.0.0.1", result="new") == 1
    assert value(samples, "feedsvc_source_new_posts_total", category="kunmingribao") >= 1
    assert value(samples, "feedsvc_source_last_success_timestamp_seconds", host="127.0.0.1") > 0
    text = requests.get(server.url + "/metrics", timeout=10).text
    for secret in ("hunter2", "reader", "secret-path", "abc123", up_url):
        assert secret not in text


def test_metrics_in_one_process(tmp_path: Path) -> None:
    """create_app without gunicorn (one process, no metrics folder) serves them too."""
    from feedsvc.app import create_app
    from feedsvc.config import load_config

    app = create_app(load_config(make_site(tmp_path / "site", fixture="site")), watch=False)
    with app.test_client() as client:
        client.get("/feeds/kunmingribao.rss")
        text = client.get("/metrics").get_data(as_text=True)
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"feedsvc_requests", "feedsvc_render_seconds", "feedsvc_index_posts"} <= families
