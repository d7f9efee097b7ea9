"""In a real headless browser (Debian's chromium, driven by Playwright with
no browser download of its own): the index page, and a feed URL that shows
as a page with its entries, while a plain HTTP client gets the RSS bytes.

Screenshots go to the test's folder; FEEDSVC_SCREENSHOTS=1 writes them to
docs/ (as shown in the README) instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
import requests
from support import REPO, Server, running

from feedsvc.config import load_config

CHROMIUM = os.environ.get("FEEDSVC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped sample site (config.yaml and posts/), served from a copy."""
    root = tmp_path_factory.mktemp("browser")
    shutil.copy(REPO / "config.yaml", root / "config.yaml")
    shutil.copytree(REPO / "posts", root / "posts")
    with running(root / "config.yaml") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's chromium "
                    "(`apt-get install chromium`, as .ci/run does)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return REPO / "docs" if os.environ.get("FEEDSVC_SCREENSHOTS") else tmp_path


def test_index_page_in_a_browser(sample: Server, browser: object, shots: Path) -> None:
    page = browser.new_page(viewport={"width": 960, "height": 900})  # type: ignore[attr-defined]
    resp = page.goto(sample.url + "/")
    assert resp.status == 200
    config = load_config(sample.config)
    assert page.title() == f"{config.site.title} · 订阅源"
    for cat in config.categories.values():
        assert page.get_by_role("heading", name=cat.title, exact=True).is_visible()
    assert page.locator("a.btn.rss").first.is_visible()
    assert page.locator("#opml-url").input_value() == "http://127.0.0.1:8000/opml.xml"
    page.screenshot(path=str(shots / "index.png"), full_page=True)
    page.close()


def test_feed_url_shows_as_a_page_while_readers_get_rss(sample: Server, browser: object,
                                                       shots: Path) -> None:
    url = sample.url + "/feeds/kunmingribao.rss"
    reader = requests.get(url, timeout=10)
    assert reader.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    assert reader.content.startswith(b"<?xml")
    expected = [e.title for e in feedparser.parse(reader.content).entries]
    assert expected

    page = browser.new_page(viewport={"width": 430, "height": 900})  # type: ignore[attr-defined]
    resp = page.goto(url)
    assert resp.status == 200
    assert resp.request.all_headers().get("sec-fetch-dest") == "document"
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["cache-control"].startswith("private")
    entries = page.locator("article h3")
    assert entries.first.is_visible()
    assert entries.all_inner_texts() == expected
    assert page.locator("#feed-url").input_value() == "http://127.0.0.1:8000/feeds/kunmingribao.rss"
    page.screenshot(path=str(shots / "feed-in-browser.png"), full_page=True)
    page.close()

    # The browser's visit changed nothing for feed readers.
    assert requests.get(url, timeout=10).content == reader.content


PHONES = (320, 360, 375, 390, 414, 430)   # CSS px widths of common phones (390: iPhone 12-15)


@pytest.mark.parametrize("path", ["/", "/feeds/kunmingribao.rss", "/feeds/all.atom"])
def test_dates_never_wrap_on_a_phone(sample: Server, browser: object, shots: Path,
                                     path: str) -> None:
    """On a phone screen each date and time stays on one line (an inline element
    that wraps has more than one line box). Several widths, so that some date
    falls at a line's end whatever fonts this machine has."""
    wrapped = {}
    for width in PHONES:
        page = browser.new_page(viewport={"width": width, "height": 844},  # type: ignore[attr-defined]
                                is_mobile=True, has_touch=True)
        assert page.goto(sample.url + path).status == 200
        assert page.locator("time").count() > 0
        broken = page.evaluate("""() => [...document.querySelectorAll("time")]
            .filter(t => t.getClientRects().length > 1).map(t => t.textContent)""")
        if broken:
            wrapped[width] = broken
        if width == 390:
            page.screenshot(path=str(shots / f"phone{path.replace('/', '-')}.png"), full_page=True)
        page.close()
    assert wrapped == {}
