"""Property tests (Hypothesis): whatever the posts and the requests, the
collector never raises, every feed it builds is well-formed and carries the
instant each post meant, and the service never answers 5xx.

Example counts are kept modest (the profiles are in conftest.py: "dev" locally,
"ci" under CI=true, ~a few seconds per test); HYPOTHESIS_PROFILE=thorough runs
ten times as many.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import string
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import feedparser
import pytest
import yaml
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from support import make_site

from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.export import export
from feedsvc.feeds import FeedKey
from feedsvc.index import Index
from feedsvc.model import FORMATS
from feedsvc.service import FeedService

NS = {"a": "http://www.w3.org/2005/Atom"}
ZONES = {"kunmingribao": None, "caijing": "Asia/Shanghai", "world": "America/New_York",
         "empty": None}
SITE_ZONE = "Asia/Shanghai"
HTML_BITS = ["<p>", "</p>", "<script>alert(1)</script>", "<style>x{}</style>", "]]>",
             '<a href="javascript:alert(1)">', '<img src="x.png" onerror="alert(1)">',
             '<a href="//h/x">', "<![CDATA[", "&", "&amp;", "&#0;", "&#xD800;", "<", ">",
             "\x00", "\x0b", "\ufffe", "\r\n", "\n\n", "# h\n", "* ", "`", "<div>", "</div>"]


# -- generated posts ----------------------------------------------------------

@dataclass
class Dated:
    """A date as written in front matter, and the instant it means."""
    value: Any                # what yaml.safe_dump writes (str, datetime or date)
    instant: dt.datetime
    offset: dt.timedelta | None   # the offset the feed must keep, when one is written


def _localize(naive: dt.datetime, zone: str) -> dt.datetime:
    # DESIGN.md: wall time in the zone, fold=0 in gaps and overlaps.
    return naive.replace(tzinfo=ZoneInfo(zone), fold=0)


naive_times = st.datetimes(min_value=dt.datetime(1902, 1, 1), max_value=dt.datetime(2025, 12, 31))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: dt.timedelta(minutes=m))


@st.composite
def dates(draw: st.DrawFn, zone: str) -> Dated:
    naive = draw(naive_times).replace(microsecond=0)
    shape = draw(st.sampled_from(["jekyll", "aware", "naive", "date"]))
    if shape in ("jekyll", "aware"):
        aware = naive.replace(tzinfo=dt.timezone(draw(offsets)))
        value: Any = aware.strftime("%Y-%m-%d %H:%M:%S %z") if shape == "jekyll" else aware
        return Dated(value, aware, aware.utcoffset())
    if shape == "naive":
        return Dated(naive, _localize(naive, zone), None)
    return Dated(naive.date(), _localize(dt.datetime.combine(naive.date(), dt.time()), zone), None)


words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
any_text = st.text(max_size=60)          # lone surrogates and controls included


@dataclass
class Generated:
    name: str
    raw: bytes
    date: Dated | None          # None: the front matter was not generated as valid


@st.composite
def good_posts(draw: st.DrawFn, n: int) -> Generated:
    cats = draw(st.lists(st.sampled_from([*ZONES, "unconfigured", "财经"]), min_size=1, max_size=3,
                         unique=True))
    zone = next((ZONES[c] for c in cats if ZONES.get(c)), None) or SITE_ZONE
    date = draw(dates(zone))
    meta: dict[str, Any] = {"title": draw(any_text), "date": date.value, "categories": cats}
    if draw(st.booleans()):
        meta["tags"] = draw(st.lists(words, max_size=3))
    if draw(st.booleans()):
        meta["excerpt"] = draw(any_text)
    meta.update(draw(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8)
                                     .filter(lambda k: k not in ("date", "updated", "published")),
                                     st.none() | st.integers() | any_text, max_size=3)))
    front = yaml.safe_dump(meta, allow_unicode=draw(st.booleans()))
    body = "".join(draw(st.lists(st.sampled_from(HTML_BITS) | any_text, max_size=12)))
    ext = draw(st.sampled_from([".md", ".html", ".markdown"]))
    raw = f"---\n{front}---\n{body}".encode("utf-8", "surrogatepass")
    return Generated(f"2022-01-01-post-{n}{ext}", raw, date)


@st.composite
def bad_posts(draw: st.DrawFn, n: int) -> Generated:
    head = draw(st.sampled_from(["---\n", "\ufeff---\r\n", "", "---\n---\n"]))
    raw = head + draw(any_text) + draw(st.sampled_from(["\n---\n", "\n...\n", ""])) + draw(any_text)
    tail = draw(st.just(b"") | st.binary(max_size=8))
    return Generated(f"2022-01-01-junk-{n}.md", raw.encode("utf-8", "surrogatepass") + tail, None)


@st.composite
def sites(draw: st.DrawFn) -> list[Generated]:
    count = draw(st.integers(min_value=1, max_value=4))
    return [draw(good_posts(i) | bad_posts(i)) for i in range(count)]


@st.composite
def front_matters(draw: st.DrawFn) -> bytes:
    """Arbitrary YAML documents (anchors, tags, flow and block styles) as front matter."""
    pieces = ["title: ", "date: ", "categories: ", "tags: ", "&a ", "*a ", "!!str ", "!!binary ",
              "!!timestamp ", "- ", "[", "]", "{", "}", ": ", "\n", "  ", "'", '"', "2022-02-30",
              "2022-03-21 06:00:08 +0800", "10:30", "EST", "null", "~", "yes", "<<: *a\n"]
    text = "".join(draw(st.lists(st.sampled_from(pieces) | any_text, max_size=25)))
    return ("---\n" + text + "\n---\n<p>x</p>\n").encode("utf-8", "surrogatepass")


def _write_site(root: Path, posts: list[Generated]) -> Path:
    cfg = make_site(root)
    for g in posts:
        (root / "_posts" / g.name).write_bytes(g.raw)
    return cfg


@given(posts=sites())
def test_collector_never_raises_and_feeds_carry_the_meant_instant(posts: list[Generated]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _write_site(Path(tmp), posts)
        service = FeedService(load_config(cfg))
        service.start()
        index = service.index
        for g in posts:
            # Every file is either a post or a reported problem.
            assert (g.name in index.posts) != (g.name in index.problems), g.name
            if g.date is not None:
                assert g.name in index.posts, index.problems.get(g.name)
        served = {p.guid: p for p in index.views().all}
        expected = {index.posts[g.name].guid: g.date for g in posts
                    if g.date is not None and g.name in index.posts}
        for key in _all_keys(service):
            body = service.document(key).body
            for entry_id, when in _dates(body, key.fmt):
                assert entry_id in served
                want = expected.get(entry_id)
                if want is not None:
                    assert when == want.instant, (entry_id, when, want)
                    if want.offset is not None:
                        assert when.utcoffset() == want.offset


@given(front=front_matters())
def test_any_front_matter_is_a_post_or_a_problem(front: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _write_site(Path(tmp), [Generated("2022-01-01-x.md", front, None)])
        index = Index(load_config(cfg))
        index.scan()
        assert ("2022-01-01-x.md" in index.posts) != ("2022-01-01-x.md" in index.problems)
        service = FeedService(load_config(cfg))
        service.start()
        for key in _all_keys(service):
            list(_dates(service.document(key).body, key.fmt))


@given(posts=sites())
def test_build_writes_every_feed_inside_its_folder(posts: list[Generated]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _write_site(Path(tmp) / "site", posts)
        out = Path(tmp) / "out"
        for path in export(load_config(cfg), out):
            assert path.resolve().is_relative_to(out.resolve())


def _all_keys(service: FeedService) -> Iterator[FeedKey]:
    views = service.index.views()
    names = [("category", c) for c in service.config.categories] + [("all", "all")]
    names += [("tag", t) for t in views.tags]
    for kind, name in names:
        for fmt in FORMATS:
            yield FeedKey(kind, name, fmt)


def _dates(body: bytes, fmt: str) -> Iterator[tuple[str, dt.datetime]]:
    """(entry id, published) of every entry, after checking the document parses."""
    if fmt == "json":
        doc = json.loads(body)
        for item in doc["items"]:
            yield item["id"], dt.datetime.fromisoformat(item["date_published"])
        return
    root = etree.fromstring(body)          # strict: any illegal character fails here
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    if fmt == "atom":
        for e in root.iterfind("a:entry", NS):
            yield (e.findtext("a:id", namespaces=NS) or "",
                   dt.datetime.fromisoformat(e.findtext("a:published", namespaces=NS) or ""))
    else:
        for item in root.iter("item"):
            yield item.findtext("guid") or "", email.utils.parsedate_to_datetime(
                item.findtext("pubDate") or "")


# -- generated requests -------------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    cfg = make_site(tmp_path_factory.mktemp("props") / "site", fixture="site")
    app = create_app(load_config(cfg), watch=False)
    with app.test_client() as c:
        yield c


segment = st.text(max_size=20) | st.sampled_from(
    ["..", ".", "%2e%2e", "%2F", "all", "kunmingribao", "昆明", "%E6%98%86%E6%98%8E", "%ff", "%",
     "2", "0", "-1", "999999", "1000000", "rss", "x.rss", "x.atom", "x.json", "\\", "%00"])
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                             blacklist_characters="\x7f"), max_size=80)


@st.composite
def paths(draw: st.DrawFn) -> str:
    parts = draw(st.lists(segment, max_size=4))
    tail = draw(st.sampled_from(["", ".rss", ".atom", ".json", ".xml", ".RSS", "/"]))
    raw = draw(st.sampled_from(["/feeds/", "/tags/", "/", "/status", "/healthz", "/feeds/all/"]))
    raw += "/".join(parts) + tail
    path = quote(raw, safe=draw(st.sampled_from(["/%", "/", "/%.?#&="])))
    # "//host…" would be a network-path reference to the test client, which then
    # fails on its own (IDNA); test_security sends such paths over a raw socket.
    return "/" + path.lstrip("/")


queries = st.lists(st.tuples(
    st.sampled_from(["limit", "filter", "filterout", "opencc", "utm_source", "page"]) | st.text(max_size=8),
    st.sampled_from(["1", "0", "-1", "100", "101", "1e3", "s2t", "t2s", ",", ",,,", "昆明"])
    | st.text(max_size=40)), max_size=5)
headers = st.dictionaries(
    st.sampled_from(["If-None-Match", "If-Modified-Since", "Accept-Encoding", "Sec-Fetch-Dest",
                     "Range", "If-Range", "If-Match", "If-Unmodified-Since", "Accept", "Host"]),
    header_text | st.sampled_from(['"abc"', "*", "W/\"x\"", "gzip;q=0", "gzip, br", "document",
                                   "bytes=0-10", "bytes=5-1", "Mon, 21 Mar 2022 06:00:08 GMT",
                                   "Sat, 01 Jan 0001 00:00:00 GMT"]), max_size=5)


def request_target(path: str, query: list[tuple[str, str]]) -> str:
    """One request target from a generated path (which may hold its own `?…`
    and `#…`) and generated parameters: Werkzeug refuses a query given both
    in the path and as `query_string=`, so the parameters join the path's."""
    if not query:
        return path
    path, hash_mark, fragment = path.partition("#")
    joiner = "&" if "?" in path else "?"
    return path + joiner + urlencode(query) + hash_mark + fragment


# Requests are cheap: eight times the profile's examples.
@settings(max_examples=settings().max_examples * 8,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=paths(), query=queries, hdrs=headers, method=st.sampled_from(["GET", "HEAD"]))
def test_service_never_answers_5xx(client: FlaskClient, path: str, query: list[tuple[str, str]],
                                   hdrs: dict[str, str], method: str) -> None:
    resp = client.open(request_target(path, query), method=method, headers=hdrs)
    assert resp.status_code < 500, (path, query, hdrs, resp.get_data(as_text=True)[:300])
