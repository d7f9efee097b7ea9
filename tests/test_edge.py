"""edge.py: what the event loop answers itself (a replayed poll) is the answer
the thread pool gives, and the middleware around the replay cache sees it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.edge import Edge

FEED = "/feeds/kunmingribao.rss"


def call(edge: Edge, path: str, method: str = "GET",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI app, as gunicorn's asyncio worker makes it."""
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(edge(scope, receive, send))
    start = sent[0]
    got = {k.decode(): v.decode() for k, v in start["headers"] if k.lower() != b"date"}
    return start["status"], got, b"".join(m.get("body", b"") for m in sent[1:])


class Counting:
    """Middleware around the replay cache, as request metrics wrap it."""

    def __init__(self, app: Any) -> None:
        self.app, self.statuses = app, []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def counted(status: str, headers: Any, exc_info: Any = None) -> Any:
            self.statuses.append(status[:3])
            return start_response(status, headers, exc_info)
        return self.app(environ, counted)


def make_edge(site: Path) -> tuple[Edge, Counting]:
    app = create_app(load_config(site), watch=False)
    counting = Counting(app.wsgi_app)
    app.wsgi_app = counting  # type: ignore[method-assign]
    return Edge(app, threads=2), counting


def test_a_replayed_answer_equals_the_first_answer(site: Path) -> None:
    edge, _ = make_edge(site)
    assert edge.replay is not None
    etag = call(edge, FEED)[1]["etag"]
    for method, headers in [("GET", {}), ("HEAD", {}), ("GET", {"Accept-Encoding": "gzip"}),
                            ("GET", {"If-None-Match": etag}),
                            ("GET", {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})]:
        first = call(edge, FEED, method, headers)
        assert edge.replay.lookup(_environ(method, FEED, headers)) is not None, (method, headers)
        assert call(edge, FEED, method, headers) == first, (method, headers)


def test_middleware_around_the_replay_cache_sees_replayed_answers(site: Path) -> None:
    edge, counting = make_edge(site)
    for _ in range(3):
        assert call(edge, FEED)[0] == 200
    assert counting.statuses == ["200", "200", "200"]


def test_a_new_post_ends_the_replay_on_the_loop(site: Path) -> None:
    edge, _ = make_edge(site)
    before = call(edge, FEED)[2]
    (site.parent / "_posts" / "2022-04-01-edge-new.md").write_text(
        "---\ntitle: 事件循环之后\ndate: 2022-04-01 08:00:00 +0800\ncategories: kunmingribao\n"
        "---\n<p>正文。</p>\n", encoding="utf-8")
    edge.app.extensions["feedsvc"].index.scan()   # what the watcher does on the change
    after = call(edge, FEED)[2]
    assert "事件循环之后".encode() in after and after != before


def test_other_paths_go_to_flask(site: Path) -> None:
    edge, _ = make_edge(site)
    assert call(edge, "/healthz") == (200, call(edge, "/healthz")[1], b"ok\n")
    status, headers, _ = call(edge, "/feeds/nope.rss")
    assert status == 404 and headers["cache-control"] == "no-store"


def _environ(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
    env.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    return env
