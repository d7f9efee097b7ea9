"""Conditional GET, codings and freshness headers, over real HTTP against
`feedsvc serve` on a loopback port (DESIGN.md "HTTP")."""

from __future__ import annotations

import datetime as dt
import gzip
import os
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest
from support import Server, make_site, post, running
from wire import Reply, fetch

FEED = "/feeds/kunmingribao.rss"
PLAIN = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip, deflate"}
# Last-Modified of FEED: the edited post's `updated` (its file is older).
UPDATED = dt.datetime(2022, 3, 25, 2, 0, 0, tzinfo=dt.UTC)
# Last-Modified of caijing: its file's mtime (later than any date in it).
TOUCHED = dt.datetime(2023, 1, 1, 0, 0, 0, tzinfo=dt.UTC)


def http_date(when: dt.datetime) -> str:
    return format_datetime(when, usegmt=True)


def make_conditional_site(root: Path) -> Path:
    cfg = make_site(root, {
        "2022-03-21-edited-with-updated.md": post(
            "改过的新闻", "2022-03-21 06:00:08 +0800", updated="2022-03-25 10:00:00 +0800"),
        "2022-03-20-older.md": post("较早的新闻", "2022-03-20 08:00:00 +0800"),
        "2022-03-21-edited-without-updated.md": post(
            "财经新闻", "2022-03-21 09:00:00 +0800", categories="caijing"),
        "2022-03-22-world.md": post("World news", "2022-03-22 09:00:00", categories="world"),
        "2022-03-19-no-front-matter.md": "只有正文，没有 front matter。\n",
    }, config={"max_age": 600, "categories": {
        "kunmingribao": {"title": "昆明日报新闻"},
        "caijing": {"title": "财经"},
        "world": {"title": "World", "max_age": 120},
        "empty": {"title": "Nothing yet"},
    }})
    posts = root / "_posts"
    march = dt.datetime(2022, 3, 22, tzinfo=dt.UTC).timestamp()
    for name in ("2022-03-21-edited-with-updated.md", "2022-03-20-older.md",
                 "2022-03-22-world.md"):
        os.utime(posts / name, (march, march))
    os.utime(posts / "2022-03-21-edited-without-updated.md",
             (TOUCHED.timestamp(), TOUCHED.timestamp()))
    return cfg


@pytest.fixture(scope="module")
def served_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_conditional_site(tmp_path_factory.mktemp("conditional") / "site")


@pytest.fixture(scope="module")
def server_options() -> dict[str, int]:
    return {"workers": 2, "threads": 4}


def get(server: Server, headers: dict[str, str] | None = None, path: str = FEED,
        method: str = "GET") -> Reply:
    return fetch(server.url, path, {**PLAIN, **(headers or {})}, method)


def test_200_then_304_with_if_none_match(server: Server) -> None:
    first = get(server)
    assert first.status == 200 and first.body.startswith(b"<?xml")
    assert first.etag.startswith('"') and not first.etag.startswith("W/")

    again = get(server, {"If-None-Match": first.etag})
    assert again.status == 304
    assert again.body == b""
    assert again.etag == first.etag
    assert again.headers["cache-control"] == "public, max-age=600"
    assert "content-length" not in again.headers or again.headers["content-length"] == "0"


def test_etag_is_a_hash_of_the_body(server: Server) -> None:
    import hashlib

    reply = get(server)
    assert reply.etag.strip('"') == hashlib.sha256(reply.body).hexdigest()[:40]


@pytest.mark.parametrize("value", [
    '"0000", {etag}, "ffff"',          # a list
    '{etag},"other"',                 # a list without spaces
    "*",
    "W/{etag}",                        # weak comparison for If-None-Match
])
def test_if_none_match_forms_that_match(server: Server, value: str) -> None:
    etag = get(server).etag
    assert get(server, {"If-None-Match": value.format(etag=etag)}).status == 304


def test_if_none_match_of_another_version_gets_the_feed(server: Server) -> None:
    reply = get(server, {"If-None-Match": '"0123456789abcdef0123456789abcdef01234567"'})
    assert reply.status == 200 and reply.body


def test_last_modified_is_the_newest_change_not_the_render_time(server: Server) -> None:
    assert get(server).headers["last-modified"] == http_date(UPDATED)
    caijing = get(server, path="/feeds/caijing.rss")
    assert caijing.headers["last-modified"] == http_date(TOUCHED)


def test_if_modified_since(server: Server) -> None:
    later = http_date(UPDATED + dt.timedelta(hours=1))
    same = http_date(UPDATED)
    earlier = http_date(UPDATED - dt.timedelta(seconds=1))
    for value, status in ((later, 304), (same, 304), (earlier, 200)):
        reply = get(server, {"If-Modified-Since": value})
        assert reply.status == status, value
    assert get(server, {"If-Modified-Since": later}).etag == get(server).etag


def test_if_none_match_wins_over_if_modified_since(server: Server) -> None:
    etag = get(server).etag
    later = http_date(UPDATED + dt.timedelta(days=1))
    earlier = http_date(UPDATED - dt.timedelta(days=1))
    stale = get(server, {"If-None-Match": '"not-this-one"', "If-Modified-Since": later})
    assert stale.status == 200
    fresh = get(server, {"If-None-Match": etag, "If-Modified-Since": earlier})
    assert fresh.status == 304


@pytest.mark.parametrize("headers", [
    {"If-None-Match": 'garbage"x, W/'},
    {"If-None-Match": '"unterminated'},
    {"If-None-Match": ","},
    {"If-None-Match": "\u00e9t\u00e9".encode().decode("latin-1")},
    {"If-Modified-Since": "yesterday"},
    {"If-Modified-Since": "Fri, 32 Mar 2022 99:99:99 GMT"},
    {"If-Modified-Since": "Mon, 01 Jan 10000 00:00:00 GMT"},
    {"If-Modified-Since": ""},
    {"If-None-Match": "", "If-Modified-Since": "0"},
])
def test_malformed_validators_get_the_full_feed(server: Server, headers: dict[str, str]) -> None:
    reply = get(server, headers)
    assert reply.status == 200
    assert reply.body == get(server).body


def test_gzip_decompresses_to_the_plain_body(server: Server) -> None:
    plain = get(server)
    zipped = get(server, GZIP)
    assert zipped.status == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(zipped.body) == plain.body
    assert zipped.etag == plain.etag[:-1] + '-gzip"'
    # Computed once per version with mtime=0: the same bytes every time.
    assert get(server, GZIP).body == zipped.body
    assert zipped.body[4:8] == b"\0\0\0\0"


def test_either_coding_of_the_current_version_gets_304(server: Server) -> None:
    plain, zipped = get(server).etag, get(server, GZIP).etag
    # The 304 carries the ETag the client holds, so its cache can refresh that entry.
    reply = get(server, {**GZIP, "If-None-Match": plain})
    assert (reply.status, reply.etag) == (304, plain)
    reply = get(server, {"If-None-Match": zipped})
    assert (reply.status, reply.etag) == (304, zipped)
    reply = get(server, {**GZIP, "If-None-Match": zipped})
    assert (reply.status, reply.etag) == (304, zipped)


def test_gzip_refused_with_q_zero(server: Server) -> None:
    for refusal in ("gzip;q=0, identity", "gzip;q=0, *", "deflate, *;q=0"):
        reply = get(server, {"Accept-Encoding": refusal})
        assert "content-encoding" not in reply.headers, refusal
    assert get(server, {"Accept-Encoding": "*"}).headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("path", [FEED, "/feeds/world.atom", "/feeds/all.json",
                                  "/feeds/empty.rss", "/healthz", "/status"])
def test_head_has_the_headers_of_get_without_a_body(server: Server, path: str) -> None:
    got, head = get(server, path=path), get(server, path=path, method="HEAD")
    assert head.status == got.status == 200
    assert head.body == b""
    assert head.headers.get("etag") == got.headers.get("etag")
    if path.startswith("/feeds/"):
        assert head.headers["content-length"] == str(len(got.body))
    zipped = get(server, GZIP, path=path, method="HEAD")
    assert zipped.body == b""


def test_freshness_and_cors_headers(server: Server) -> None:
    for path, max_age in ((FEED, 600), ("/feeds/world.json", 120), ("/feeds/all.atom", 600)):
        reply = get(server, path=path)
        assert reply.headers["cache-control"] == f"public, max-age={max_age}"
        assert "Accept-Encoding" in reply.headers["vary"]
        assert reply.headers["access-control-allow-origin"] == "*"
    assert b"<ttl>2</ttl>" in get(server, path="/feeds/world.rss").body  # 120 s in minutes


def test_304_keeps_vary_and_cors(server: Server) -> None:
    etag = get(server).etag
    reply = get(server, {"If-None-Match": etag})
    assert reply.status == 304
    assert "Accept-Encoding" in reply.headers["vary"]
    assert reply.headers["access-control-allow-origin"] == "*"


def test_unknown_feeds_are_404_not_500(server: Server) -> None:
    for path in ("/feeds/nope.rss", "/feeds/kunmingribao.xml", "/feeds/kunmingribao/9.rss",
                 "/feeds/%ff.rss", "/nothing"):
        assert get(server, path=path).status == 404, path
    assert get(server, path="/feeds/kunmingribao.rss?limit=0").status == 400


def test_etags_and_dates_survive_a_restart(tmp_path: Path) -> None:
    site = make_conditional_site(tmp_path / "site")
    paths = [FEED, "/feeds/caijing.atom", "/feeds/empty.json", "/feeds/all.rss"]
    with running(site) as first:
        before = {p: get(first, path=p) for p in paths}
        before.update({p + " gzip": get(first, GZIP, path=p) for p in paths})
    with running(site) as other:
        for p in paths:
            zipped = get(other, GZIP, path=p)
            assert (zipped.body, zipped.etag) == (before[p + " gzip"].body,
                                                  before[p + " gzip"].etag)
        for p in paths:
            reply = get(other, path=p)
            assert reply.body == before[p].body
            assert reply.etag == before[p].etag
            assert reply.headers["last-modified"] == before[p].headers["last-modified"]
            assert get(other, {"If-None-Match": before[p].etag}, path=p).status == 304


def test_last_modified_parses_and_is_never_in_the_future(server: Server) -> None:
    for path in (FEED, "/feeds/empty.rss", "/feeds/all.json"):
        when = parsedate_to_datetime(get(server, path=path).headers["last-modified"])
        assert when <= dt.datetime.now(dt.UTC)


def test_healthz_and_status(server: Server) -> None:
    import json

    assert get(server, path="/healthz").body == b"ok\n"
    status = json.loads(get(server, path="/status").body)
    kun = status["categories"]["kunmingribao"]
    assert kun["posts"] == 2
    assert kun["newest"] == "2022-03-21T06:00:08+08:00"
    assert dt.datetime.fromisoformat(kun["last_modified"]) == UPDATED
    assert '"' + kun["etags"]["rss"] + '"' == get(server).etag
    assert status["categories"]["empty"]["posts"] == 0
    assert status["skipped"] == [{"file": "2022-03-19-no-front-matter.md",
                                  "reason": status["skipped"][0]["reason"]}]
    assert "front matter" in status["skipped"][0]["reason"]
    assert status["config_error"] is None
    assert status["cache"]["type"] == "memory"
    assert status["worker"]["pid"] > 0
