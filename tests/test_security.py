"""One test (or a few) per finding of docs/SECURITY.md; the finding's number
is in each test's docstring."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from flask.testing import FlaskClient
from lxml import etree
from support import Server, machine_redis, make_site, post
from upstream_support import Route, Upstream, upstream

from feedsvc.app import create_app
from feedsvc.config import Config, load_config
from feedsvc.errors import FetchError
from feedsvc.upstream.collector import Collector, SourceResult
from feedsvc.upstream.fetch import Fetcher, Limits

SECRET = "db_password: hunter2"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    cfg = make_site(tmp_path / "site", {
        "2022-03-21-a.md": post("A", "2022-03-21 06:00:08 +0800", tags="[昆明, 经济]"),
        "2022-03-22-b.md": post("B", "2022-03-22 06:00:08 +0800"),
    })
    # Things that must never come out over HTTP.
    (tmp_path / "site" / "secret.yaml").write_text(SECRET + "\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    return cfg


@pytest.fixture
def client(site: Path) -> Iterator[FlaskClient]:
    with create_app(load_config(site), watch=False).test_client() as c:
        yield c


@pytest.fixture(scope="module")
def served_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sec")
    cfg = make_site(root / "site", {"2022-03-21-a.md": post("A", "2022-03-21 06:00:08 +0800",
                                                            tags="[昆明]")})
    (root / "site" / "secret.yaml").write_text(SECRET + "\n", encoding="utf-8")
    return cfg


def raw_request(server: Server, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client library normalising the path) and
    return the status code and the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and len(b"".join(chunks)) > 200_000:
                break
    answer = b"".join(chunks)
    return int(answer.split(b" ", 2)[1]), answer


def get_raw(server: Server, target: str, headers: str = "") -> tuple[int, bytes]:
    return raw_request(server, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               f"{headers}\r\n".encode("latin-1"))


# -- S1: path traversal in slugs, tags and page numbers (HTTP) -----------------

TRAVERSALS = [
    "/feeds/../config.yaml", "/feeds/..%2fconfig.yaml", "/feeds/..%2Fsecret.yaml",
    "/feeds/%2e%2e/%2e%2e/secret.txt", "/feeds/..%2f..%2fsecret.txt.rss",
    "/feeds/....//config.yaml.rss", "/tags/..%2F..%2Fsecret.yaml", "/tags/..%2f..%2fconfig.rss",
    "/tags/%2e%2e.rss", "/tags/%00.rss", "/feeds/kunmingribao%00.rss", "/feeds/%5c..%5cconfig.yaml",
    "/feeds/kunmingribao/..%2f..%2fsecret.yaml", "/feeds/kunmingribao/../../secret.yaml",
    "/static/../config.yaml", "//etc/passwd", "/feeds//etc/passwd.rss", "/feeds/config.yaml",
    "/secret.yaml", "/config.yaml", "/opml.xml/../config.yaml",
    "/feeds//evil.example", "///evil.example//x",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_no_url_reaches_a_file(server: Server, target: str) -> None:
    """S1: feeds are documents built in memory, never files looked up by URL."""
    status, answer = get_raw(server, target)
    assert status in (400, 404), answer[:300]
    assert b"hunter2" not in answer and b"site:" not in answer and b"root:" not in answer


def test_no_redirect_is_built_from_the_host_header(server: Server) -> None:
    """S4: Werkzeug's merge_slashes answered '/feeds//x' with a 308 to http://<Host>/feeds/x
    (a permanent, cacheable redirect to whatever host the request named); now a 404."""
    for target in ("/feeds//evil.example/x.rss", "//evil.example/feeds/kunmingribao.rss"):
        status, answer = raw_request(server, f"GET {target} HTTP/1.1\r\nHost: evil.example\r\n"
                                             "Connection: close\r\n\r\n".encode())
        assert status == 404
        assert b"Location" not in answer


PAGES = ["0", "-1", "00", "01", "1000000", "99999999999999999999", "1e3", "0x2", "٣", "２",
         "2.0", "+2", " 2", "%32", "2%00", "NaN"]


@pytest.mark.parametrize("page", PAGES)
def test_odd_page_numbers_are_not_found(client: FlaskClient, page: str) -> None:
    """S1: page numbers are ASCII digits 2…999999 of a page that exists; anything else is a 404."""
    for base in ("/feeds/kunmingribao", "/tags/%E6%98%86%E6%98%8E", "/feeds/all"):
        resp = client.get(f"{base}/{page}.rss")
        assert resp.status_code == 404, (base, page, resp.status_code)


# -- S2: `feedsvc build` output paths -------------------------------------------

def test_build_writes_nothing_outside_its_folder(tmp_path: Path) -> None:
    """S2: tags are names chosen by post authors; none may steer a file out of --out."""
    long_tag = "长" * 100                      # 300 bytes: longer than a file name may be
    tags = f'["..", ".", "../../escape", "a/../../b", "/abs", "\\0nul", "%2e%2e", "{long_tag}"]'
    cfg = make_site(tmp_path / "site", {"2022-03-21-a.md": post("A", "2022-03-21", tags=tags)})
    out = tmp_path / "deep" / "out"
    run = subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(cfg),
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    outside = [p for p in tmp_path.rglob("*") if p.is_file()
               and not p.is_relative_to(out) and not p.is_relative_to(tmp_path / "site")]
    assert outside == []
    assert (out / "feeds" / "kunmingribao.rss").exists()
    assert (out / "tags" / "%2e%2e.rss").exists()         # a harmless name is still written
    assert "no file for the tag feed '.'" in run.stderr      # the refused ones are reported


# -- S3: oversized and malformed requests ---------------------------------------

def test_oversized_request_line_is_refused(server: Server) -> None:
    """S3: gunicorn bounds the request line (8190 bytes) before Flask sees it."""
    status, _ = get_raw(server, "/feeds/kunmingribao.rss?filter=" + "a" * 9000)
    assert status in (400, 414)
    assert server.get("/healthz").status_code == 200


def test_oversized_header_and_too_many_headers_are_refused(server: Server) -> None:
    """S3: one header over 8190 bytes, or more than 100 headers, is a 4xx."""
    status, _ = get_raw(server, "/feeds/kunmingribao.rss", f"X-Big: {'b' * 9000}\r\n")
    assert 400 <= status < 500
    many = "".join(f"X-H{i}: v\r\n" for i in range(150))
    status, _ = get_raw(server, "/feeds/kunmingribao.rss", many)
    assert 400 <= status < 500
    assert server.get("/healthz").status_code == 200


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /feeds/kunmingribao.rss HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /feeds/\xff\xfe.rss HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /feeds/kunmingribao.rss?limit=%zz&filter=%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /feeds/kunmingribao.rss HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: \xff\xfe\r\n"
    b"If-None-Match: \"\r\nConnection: close\r\n\r\n",
    b"GET /feeds/kunmingribao.rss HTTP/1.1\r\nHost: x\r\nRange: bytes=999999-1\r\nConnection: close\r\n\r\n",
    b"GET /feeds/kunmingribao.rss HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=nan\r\n"
    b"Connection: close\r\n\r\n",
    b"GET /feeds/kunmingribao.rss HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\n",
], ids=["garbage", "http-9.9", "non-utf8-path", "bad-percent", "bad-validators", "bad-range",
        "nan-qvalue", "te-and-cl"])
def test_malformed_requests_never_get_5xx(server: Server, request_bytes: bytes) -> None:
    """S3: malformed requests are answered 2xx/3xx/4xx, and the server keeps serving."""
    status, answer = raw_request(server, request_bytes)
    assert status < 500, answer[:300]
    assert server.get("/healthz").status_code == 200


def test_many_filter_terms_are_refused(client: FlaskClient) -> None:
    """S3: filter terms are bounded (20 terms of 100 characters), so a query cannot make
    matching cost terms × posts × fields without limit."""
    assert client.get("/feeds/all.rss?filter=" + ",".join(f"t{i}" for i in range(21))).status_code == 400
    assert client.get("/feeds/all.rss?filterout=" + "x" * 101).status_code == 400


# -- S4: the request's Host and unknown parameters never reach the bytes ----------

def test_host_header_does_not_reach_the_feed(client: FlaskClient) -> None:
    """S4: self links come from feeds_url, so a forged Host cannot poison a shared cache."""
    plain = client.get("/feeds/kunmingribao.atom")
    forged = client.get("/feeds/kunmingribao.atom", headers={
        "Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher"})
    assert b"evil.example" not in forged.data and b"gopher" not in forged.data
    assert forged.headers["ETag"] == plain.headers["ETag"]


def test_unknown_parameters_are_not_reflected(client: FlaskClient) -> None:
    """S4: utm_* and friends are left out of the document (and so of the cache key)."""
    plain = client.get("/feeds/kunmingribao.rss")
    tagged = client.get("/feeds/kunmingribao.rss?utm_source=%3Cscript%3Ealert(1)%3C/script%3E")
    assert tagged.data == plain.data and tagged.headers["ETag"] == plain.headers["ETag"]


# -- S5: HTML injection on the index page and the browser view ----------------------

HOSTILE_CONFIG = {
    "site": {"title": '<script>alert("site")</script>', "url": "https://news.example.com",
             "timezone": "Asia/Shanghai", "description": "</title><svg onload=alert(0)>"},
    "categories": {
        "evil": {"title": '"><img src=x onerror=alert(1)>', "description": "<script>alert(2)</script>",
                 "link": "https://news.example.com/?q=\"><script>alert(3)</script>"},
    },
}


@pytest.fixture
def hostile_client(tmp_path: Path) -> Iterator[FlaskClient]:
    cfg = make_site(tmp_path / "site", {
        # Unclosed, so that the title keeps it as text (complete tags are stripped).
        "2022-03-21-a.md": post("'\"><img src=x onerror=alert(4)'", "2022-03-21 06:00:08 +0800",
                                categories="evil", tags='["<svg onload=alert(5)>", "\\"><b>"]',
                                excerpt='"<script>alert(6)</script>"',
                                permalink="'javascript:%61lert(7)'"),
    }, config=HOSTILE_CONFIG)
    with create_app(load_config(cfg), watch=False).test_client() as c:
        yield c


def assert_no_injection(html: bytes) -> None:
    doc = lxml.html.document_fromstring(html)
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        assert el.tag not in ("svg", "img", "iframe", "object"), lxml.html.tostring(el)[:200]
        if el.tag == "script":
            assert "alert" not in (el.text or "")
        for name, value in el.attrib.items():
            # The pages' own handlers (onfocus="this.select()") are fine; injected ones are not.
            assert not (name.startswith("on") and "alert" in value), (el.tag, name, value)
            if name in ("href", "src"):
                assert not value.strip().lower().startswith(("javascript:", "data:", "vbscript:"))


@pytest.mark.parametrize("path", ["/", "/feeds/evil.rss", "/feeds/all.atom",
                                  "/tags/%3Csvg%20onload%3Dalert(5)%3E.json"])
def test_pages_escape_titles_tags_and_links(hostile_client: FlaskClient, path: str) -> None:
    """S5: config titles, post titles, tags and links are text on every HTML page."""
    resp = hostile_client.get(path, headers={"Sec-Fetch-Dest": "document"})
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert_no_injection(resp.data)
    if path != "/":
        assert b"&lt;img src=x onerror=alert(4)" in resp.data or \
            b"&#60;img src=x onerror=alert(4)" in resp.data


@pytest.mark.parametrize("path", ["/", "/feeds/kunmingribao.rss"])
def test_html_pages_allow_only_our_own_script(client: FlaskClient, path: str) -> None:
    """S5, second line: a CSP that lets only the page's own inline script run
    (by its hash), so that anything a sanitiser might miss stays inert."""
    resp = client.get(path, headers={"Sec-Fetch-Dest": "document"})
    policy = resp.headers["Content-Security-Policy"]
    scripts = lxml.html.fromstring(resp.data).xpath("//script/text()")
    assert scripts, "the page has its copy-button script"
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "default-src 'none'" in policy and "base-uri 'none'" in policy
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_feeds_are_not_sniffed(client: FlaskClient) -> None:
    resp = client.get("/feeds/kunmingribao.atom")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in resp.headers


def test_opml_escapes_titles(hostile_client: FlaskClient) -> None:
    """S5: the OPML file is well-formed XML whatever the titles hold."""
    root = etree.fromstring(hostile_client.get("/opml.xml").data)
    titles = [o.get("title") or o.get("text") for o in root.iter("outline")]
    assert '"><img src=x onerror=alert(1)>' in titles


# -- S10: posts_dir outside the config's folder ----------------------------------------

def test_posts_dir_may_be_outside_the_config_folder(tmp_path: Path) -> None:
    """S10: allowed (a Jekyll checkout beside /etc/feedsvc is common); config.yaml is
    trusted like code. Symlinks inside posts_dir that lead outside it are still ignored."""
    blog = tmp_path / "blog" / "_posts"
    blog.mkdir(parents=True)
    (blog / "2022-03-21-a.md").write_text(post("Outside", "2022-03-21"), encoding="utf-8")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "2022-03-21-p.md").write_text(post("Private", "2022-03-21"),
                                                          encoding="utf-8")
    (blog / "2022-03-21-link.md").symlink_to(tmp_path / "private" / "2022-03-21-p.md")
    cfg = make_site(tmp_path / "etc", config={"posts_dir": "../blog/_posts"})
    with create_app(load_config(cfg), watch=False).test_client() as c:
        body = c.get("/feeds/kunmingribao.json").get_json()
    assert [i["title"] for i in body["items"]] == ["Outside"]


# -- S6-S9: upstream sources ----------------------------------------------------------

QUICK = Limits(connect_timeout=2, read_timeout=2, deadline=20, retries=0, backoff=0)


def upstream_site(tmp_path: Path, urls: list[str], **extra: Any) -> Config:
    cats = {"kunmingribao": {"title": "昆明日报新闻", "sources": urls}}
    return load_config(make_site(tmp_path / "site", config={"categories": cats, **extra}))


def collect_one(config: Config, limits: Limits = QUICK) -> SourceResult:
    fetcher = Fetcher(limits, allow_private=config.allow_private_sources)
    collector = Collector(config, fetcher=fetcher)
    [result] = collector.run(collector.sources())
    return result


def stored_text(config: Config) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace")
                   for p in config.posts_dir.rglob("*") if p.is_file())


def rss(items: str, doctype: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{doctype}\n<rss version="2.0"><channel>'
            f"<title>t</title><link>http://example.com/</link><description>d</description>"
            f"{items}</channel></rss>").encode()


def item(title: str, guid: str = "g1", description: str = "<p>x</p>") -> str:
    return (f"<item><title>{title}</title><guid>{guid}</guid><link>http://example.com/{guid}</link>"
            f"<pubDate>Mon, 21 Mar 2022 06:00:08 +0800</pubDate>"
            f"<description>{description}</description></item>")


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        yield server


LAUGHS = "".join(f'<!ENTITY l{i} "{"&l" + str(i - 1) + ";" * 1}' + f'{("&l" + str(i - 1) + ";") * 9}">'
                 for i in range(1, 10))


def test_entity_expansion_in_an_upstream_feed_is_not_performed(tmp_path: Path, up: Upstream) -> None:
    """S6: a billion-laughs DOCTYPE neither hangs the collector nor fills a post."""
    doctype = f'<!DOCTYPE rss [<!ENTITY l0 "lol">{LAUGHS}]>'
    up.routes["/bomb.xml"] = Route(rss(item("&l9;", "bomb") + item("fine", "ok"), doctype))
    config = upstream_site(tmp_path, [up.url + "/bomb.xml"])
    started = time.monotonic()
    result = collect_one(config)
    assert time.monotonic() - started < 10
    assert sum(p.stat().st_size for p in config.posts_dir.rglob("*") if p.is_file()) < 100_000
    assert "lollollollol" not in stored_text(config)
    assert result.error is None or "XML" in result.error


def test_external_entities_in_an_upstream_feed_are_not_resolved(tmp_path: Path, up: Upstream) -> None:
    """S6: SYSTEM entities (a local file, a URL) and external DTDs are never read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE\n", encoding="utf-8")
    doctype = (f'<!DOCTYPE rss SYSTEM "{up.url}/evil.dtd" [<!ENTITY file SYSTEM "file://{secret}">'
               f'<!ENTITY web SYSTEM "{up.url}/entity.txt">]>')
    up.routes["/xxe.xml"] = Route(rss(item("a &file; b", "f", "&file; &web;") + item("c &web; d", "w"),
                                      doctype))
    up.routes["/entity.txt"] = Route(b"FETCHED-ENTITY", "text/plain")
    up.routes["/evil.dtd"] = Route(b'<!ENTITY web "FETCHED-DTD">', "application/xml-dtd")
    config = upstream_site(tmp_path, [up.url + "/xxe.xml"])
    collect_one(config)
    text = stored_text(config)
    assert "TOP-SECRET" not in text and "FETCHED" not in text
    assert [s.path for s in up.seen()] == ["/xxe.xml"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml",
                                      "gopher://127.0.0.1:70/_x", "javascript:alert(1)",
                                      "data:text/xml,<rss/>", "dict://127.0.0.1:6379/info"])
def test_redirects_to_other_schemes_are_refused(tmp_path: Path, up: Upstream, location: str) -> None:
    """S7: only http and https are followed, at every hop."""
    up.routes["/moved"] = Route(status=302, location=location)
    config = upstream_site(tmp_path, [up.url + "/moved"])
    result = collect_one(config)
    assert result.error and "only http and https" in result.error
    assert list(config.posts_dir.rglob("*.md")) == []


def test_redirect_loops_end(tmp_path: Path, up: Upstream) -> None:
    """S7: a redirect loop ends after a few hops."""
    up.routes["/a"] = Route(status=302, location="/b")
    up.routes["/b"] = Route(status=302, location="/a")
    result = collect_one(upstream_site(tmp_path, [up.url + "/a"]))
    assert result.error and "redirects" in result.error
    assert len(up.seen()) <= 6


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1", "0x7f000001",
                                  "2130706433", "0.0.0.0", "[::ffff:127.0.0.1]"])
def test_private_and_loopback_sources_are_refused_when_not_allowed(tmp_path: Path, up: Upstream,
                                                                   host: str) -> None:
    """S8: allow_private_sources: false refuses loopback however it is spelt, before connecting."""
    port = up.url.rsplit(":", 1)[1]
    config = upstream_site(tmp_path, [f"http://{host}:{port}/rss.xml"], allow_private_sources=False)
    result = collect_one(config)
    assert result.error and ("private, loopback or link-local" in result.error
                             or "cannot resolve" in result.error)
    assert up.seen() == []


def test_private_addresses_are_refused_for_redirect_hops_too(tmp_path: Path) -> None:
    """S8: the check runs on every hop (a public feed redirecting to 169.254.169.254)."""
    fetcher = Fetcher(QUICK, allow_private=False)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fe80::1]/",
                "http://192.168.1.1/", "http://[fc00::1]/",
                # Carrier-grade NAT space; Alibaba Cloud's metadata service is 100.100.100.200.
                "http://100.64.0.1/", "http://100.100.100.200/latest/meta-data/"):
        with pytest.raises(FetchError, match="private, loopback or link-local"):
            fetcher._check_target(url)


class _Endless(BaseHTTPRequestHandler):
    """An upstream that never stops: a body without end, or a gzip bomb."""
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        if self.path == "/bomb.xml":
            bomb = _bomb()
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)
            return
        if self.path == "/declared.xml":
            self.send_header("Content-Length", str(50 * 2**30))
        self.end_headers()
        self.wfile.write(rss("")[:-20])
        chunk = b"<!-- " + b"x" * 65536 + b" -->"
        try:
            for _ in range(100_000):            # bounded: ~6.5 GB at most, stopped far sooner
                self.wfile.write(chunk)
        except OSError:
            pass


@functools.cache
def _bomb() -> bytes:
    """100 MiB of XML in about 100 KiB of gzip."""
    return gzip.compress(rss("") + b" " * (100 * 2**20), compresslevel=6)


@contextmanager
def endless_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/endless.xml", "/declared.xml", "/bomb.xml"])
def test_upstream_bodies_are_capped(tmp_path: Path, path: str) -> None:
    """S9: a body without end, a huge Content-Length and a gzip bomb all stop at the
    10 MiB cap (counted after decompression), in bounded time."""
    _bomb()
    with endless_upstream() as base:
        config = upstream_site(tmp_path, [base + path])
        started = time.monotonic()
        result = collect_one(config, Limits(connect_timeout=2, read_timeout=5, retries=0))
    assert time.monotonic() - started < 30
    assert result.error and "limit" in result.error


# -- S11: caches filled through query variants --------------------------------------------

def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_query_variants_do_not_fill_the_caches(tmp_path: Path) -> None:
    with machine_redis():
        _query_variants_do_not_fill_the_caches(tmp_path)


def _query_variants_do_not_fill_the_caches(tmp_path: Path) -> None:
    """S11: every ?filter= term is another document; 150 of them (a 1 MB feed each,
    the whole site matches) must leave no trace in Redis and only a bounded one in memory."""
    import redis

    body = "<p>" + "长文。" * 10_000 + "</p>"               # 90 KB of UTF-8 per post
    posts = {f"2022-03-{d:02d}-p.md": post(f"P{d}", f"2022-03-{d:02d} 06:00:00 +0800", body=body)
             for d in range(1, 13)}
    cfg = make_site(tmp_path / "site", posts, config={
        "cache": {"type": "redis", "url": "redis://127.0.0.1:6379/8"}})
    db = redis.Redis(db=8)   # a DB of its own (the soak uses 7): it counts keys
    app = create_app(load_config(cfg), watch=False)
    client = app.test_client()
    assert client.get("/feeds/all.json").status_code == 200
    keys_before, rss_before = db.dbsize(), _rss_mib()
    for i in range(150):
        resp = client.get(f"/feeds/all.json?filter=p,zz{i}", headers={"Sec-Fetch-Dest": "document"}
                          if i % 2 else {})
        assert resp.status_code == 200
    grown, new_keys = _rss_mib() - rss_before, db.dbsize() - keys_before
    assert new_keys == 0
    assert grown < 90, f"{grown:.0f} MiB"     # kept, the 150 documents took 158 MiB and 75 keys
    for key in db.scan_iter("feedsvc:*"):          # DB 7 is this suite's own
        db.delete(key)
