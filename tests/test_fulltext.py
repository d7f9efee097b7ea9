"""Full text (`fulltext: true`): a summary-only feed's items get the article of
their page (UTF-8 and GBK pages on a real loopback upstream), sanitised and
absolutised; a page that fails keeps the feed's content and is reported by
`collect` and in /status; caps on pages, bytes and time hold."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support import FIXTURES, running
from test_upstream import FAST, NOW, site_with, stored
from upstream_support import Route, Upstream, upstream

from feedsvc.config import Config
from feedsvc.posts import read_body
from feedsvc.upstream.collector import Collector, SourceResult, load_state
from feedsvc.upstream.fetch import Fetcher
from feedsvc.upstream.fulltext import FulltextLimits

PAGES = FIXTURES / "pages"


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/summary.xml"] = Route.fixture("summary-only.xml")
        server.routes["/articles/lake.html"] = Route(
            PAGES.joinpath("article-utf8-lake.html").read_bytes(), "text/html; charset=utf-8")
        # GBK, declared only in the page's <meta>.
        server.routes["/articles/metro.html"] = Route(
            PAGES.joinpath("article-gbk-metro.html").read_bytes(), "text/html")
        server.routes["/articles/gallery.html"] = Route(
            PAGES.joinpath("article-no-text.html").read_bytes(), "text/html")
        yield server          # /articles/gone.html: 404


def fulltext_site(tmp_path: Path, up: Upstream, **source: object) -> Config:
    return site_with(tmp_path, {"kunmingribao": [
        {"url": up.url + "/summary.xml", "fulltext": True, **source}]})


def collect(config: Config, limits: FulltextLimits | None = None) -> SourceResult:
    collector = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
    if limits:
        collector.fulltext_limits = limits
    [result] = collector.run(collector.sources())
    return result


def bodies(config: Config) -> dict[str, str]:
    return {p.title: read_body(p.path) for p in stored(config).values()}


def test_summary_only_items_get_the_article(tmp_path: Path, up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    result = collect(config)
    assert (result.new, result.fulltext, result.error) == (4, 2, None)
    body = bodies(config)
    lake = body["滇池绿道全线贯通"]
    assert "全长130公里的滇池绿道今日全线贯通" in lake
    assert "下一步，昆明将继续完善绿道周边的生态修复工作" in lake
    # Not the page's furniture, and sanitised and absolutised like every post.
    assert "版权所有" not in lake and "分享到" not in lake and "首页" not in lake
    assert "<script" not in lake and "onclick" not in lake and "track(" not in lake
    assert f'src="{up.url}/img/lake.jpg"' in lake
    assert f'href="{up.url}/articles/related.html"' in lake
    # GBK, declared in <meta> only.
    assert "全线共设车站22座" in body["昆明地铁五号线试运行"]
    assert "镕铸城市发展新动能" in body["昆明地铁五号线试运行"]


def test_failed_pages_keep_the_feed_content_and_are_reported(tmp_path: Path,
                                                              up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    result = collect(config)
    body = bodies(config)
    assert "花市图集。" in body["斗南花市图集"]           # no article on the page
    assert "原文已删除。" in body["已删除的文章"]         # 404
    errors = " | ".join(result.fulltext_errors)
    assert "/articles/gallery.html: no article found on the page" in errors
    assert "/articles/gone.html: HTTP 404" in errors
    assert "full text failed for 2 (kept the feed's content" in result.line()
    state = load_state(config, "kunmingribao", up.url + "/summary.xml")
    assert state.public()["last_fulltext_errors"] == list(result.fulltext_errors)


def test_status_reports_full_text_failures(tmp_path: Path, up: Upstream) -> None:
    token = "admin-token-of-the-fulltext-tests"
    config = site_with(tmp_path, {"kunmingribao": [
        {"url": up.url + "/summary.xml", "fulltext": True}]}, admin_token=token)
    collect(config)
    with running(config.path) as server:
        # The sources are in the admin view of /status (docs/SECURITY.md S13).
        [source] = server.get("/status", headers={"Authorization": f"Bearer {token}"}
                              ).json()["sources"]
        assert any("gone.html: HTTP 404" in e for e in source["last_fulltext_errors"])


def test_collect_by_hand_prints_full_text_failures(tmp_path: Path, up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    run = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                          str(config.path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "4 new, 0 unchanged, full text for 2, full text failed for 2" in run.stdout


def test_cap_on_pages_per_pass(tmp_path: Path, up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    result = collect(config, FulltextLimits(pages=1))
    assert (result.new, result.fulltext) == (4, 1)
    assert sum("over the cap of 1 article pages per pass" in e
               for e in result.fulltext_errors) == 3
    assert len(up.seen(method="GET")) == 2          # the feed and one article page


def test_cap_on_bytes_per_page(tmp_path: Path, up: Upstream) -> None:
    up.routes["/articles/lake.html"] = Route(b"<html><body><p>" + "长".encode() * 2_000_000
                                             + b"</p></body></html>", "text/html")
    config = fulltext_site(tmp_path, up)
    result = collect(config, FulltextLimits(max_bytes=1_000_000))
    assert any("lake.html: body of" in e and "over the 1000000-byte limit" in e
               for e in result.fulltext_errors)
    assert "滇池绿道今日全线贯通。" in bodies(config)["滇池绿道全线贯通"]


def test_an_extraction_past_its_time_is_stopped(tmp_path: Path, up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    result = collect(config, FulltextLimits(extract_seconds=0.001))
    assert result.new == 4
    assert any("extraction took longer than 0.001 s" in e for e in result.fulltext_errors)


def test_private_article_pages_are_refused_when_private_sources_are(tmp_path: Path,
                                                                    up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    config = replace(config, allow_private_sources=False)
    # The feed itself comes through a fetcher that allows loopback (the test's
    # upstream); every article page, and any redirect hop, is checked by config.
    up.routes["/articles/metro.html"] = Route(status=302, location="http://10.0.0.1/x.html")
    result = collect(config)
    assert (result.new, result.fulltext) == (4, 0)
    assert all("private" in e or "HTTP 404" in e for e in result.fulltext_errors), \
        result.fulltext_errors


def test_serving_never_imports_the_extractor(tmp_path: Path, up: Upstream) -> None:
    config = fulltext_site(tmp_path, up)
    collect(config)
    probe = ("import sys; from feedsvc.app import create_app; from feedsvc.config import "
             f"load_config; app = create_app(load_config({str(config.path)!r}), watch=False); "
             "c = app.test_client(); assert c.get('/feeds/kunmingribao.atom').status_code == 200; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('trafilatura', 'justext', 'htmldate', 'courlan', 'readability')))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
