"""`/` lists the most used tag feeds only; /tags.html lists every one, a page at a
time (issue 15, finding 10: tag feeds grow with the posts, and 3,000 of them
made `/` 1 MiB). Served over HTTP by a real `feedsvc serve`, and written by
`feedsvc build` with the same bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import lxml.html
import pytest
from support import Server, make_site, post

from feedsvc.pages import INDEX_TAGS, TAG_PAGE
from feedsvc.posts import MAX_TERMS

POSTS = 6
BASE = "https://news.example.com"


def tags_of(n: int) -> list[str]:
    """Post n's tags: `common` on every post, `half` on the first three, and
    unique ones up to the per-post limit."""
    shared = ["common"] + (["half"] if n < 3 else [])
    return shared + [f"t{n}-{j:03d}" for j in range(MAX_TERMS - len(shared))]


EVERY_TAG = sorted({t for n in range(POSTS) for t in tags_of(n)})


@pytest.fixture(scope="module")
def served_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    posts = {f"2022-03-{n + 10:02d}-p{n}.md": post(f"P{n}", f"2022-03-{n + 10:02d} 10:00:00 +0800",
                                                   tags="[" + ", ".join(tags_of(n)) + "]")
             for n in range(POSTS)}
    return make_site(tmp_path_factory.mktemp("tags") / "site", posts)


def listed(html: bytes) -> list[tuple[str, int]]:
    """(tag, count) of each entry of the page's tag list, in order."""
    page = lxml.html.fromstring(html)
    return [(li.find("a").text_content(), int(li.find_class("count")[0].text_content()))
            for ul in page.find_class("tags") for li in ul.findall("li")]


def link(html: bytes, rel: str | None = None, text: str | None = None) -> str | None:
    page = lxml.html.fromstring(html)
    for a in page.iter("a"):
        if (rel and a.get("rel") == rel) or (text and a.text_content() == text):
            return urlsplit(a.get("href")).path
    return None


def test_the_index_lists_only_the_most_used_tags_and_links_the_full_list(
        server: Server) -> None:
    assert len(EVERY_TAG) > TAG_PAGE > INDEX_TAGS     # the site needs two pages of tags
    html = server.get("/").content
    tags = listed(html)
    assert len(tags) == INDEX_TAGS
    assert tags[:2] == [("common", POSTS), ("half", 3)]
    assert [t for t, _ in tags[2:]] == [t for t in EVERY_TAG if t not in ("common", "half")
                                        ][:INDEX_TAGS - 2]
    assert f"共 {len(EVERY_TAG)} 个标签" in html.decode()
    assert link(html, text="查看全部标签") == "/tags.html"


def test_the_tag_list_holds_every_tag_once_a_page_at_a_time(server: Server) -> None:
    first = server.get("/tags.html")
    assert first.status_code == 200 and first.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" in first.headers["Content-Security-Policy"]
    second_path = link(first.content, rel="next")
    assert second_path == "/tags-2.html"
    second = server.get(second_path)
    assert second.status_code == 200
    assert link(second.content, rel="prev") == "/tags.html" and link(second.content, rel="next") is None
    on_pages = listed(first.content) + listed(second.content)
    assert len(listed(first.content)) == TAG_PAGE
    assert sorted(t for t, _ in on_pages) == EVERY_TAG           # each exactly once
    assert on_pages[:2] == [("common", POSTS), ("half", 3)]
    # The list's links are the tag feeds themselves.
    page = lxml.html.fromstring(second.content)
    href = next(a.get("href") for a in page.iter("a") if a.text_content() == on_pages[-1][0])
    assert unquote(urlsplit(href).path) == f"/tags/{on_pages[-1][0]}.rss"
    assert server.get(urlsplit(href).path).status_code == 200


@pytest.mark.parametrize("path", ["/tags-1.html", "/tags-3.html", "/tags-0.html",
                                  "/tags-02.html", "/tags-x.html", "/tags/"])
def test_pages_of_the_tag_list_past_the_end_or_not_canonical_are_404(
        server: Server, path: str) -> None:
    assert server.get(path).status_code == 404


def test_the_tag_list_answers_conditional_requests(server: Server) -> None:
    first = server.get("/tags-2.html")
    again = server.get("/tags-2.html", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == first.headers["ETag"]


def test_build_writes_the_tag_list_as_serve_answers_it(server: Server, served_site: Path,
                                                        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(served_site),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tags.html").read_bytes() == server.get("/tags.html").content
    assert (tmp_path / "tags-2.html").read_bytes() == server.get("/tags-2.html").content
    assert not (tmp_path / "tags-3.html").exists()
    assert not any(p.suffix == ".html" for p in (tmp_path / "tags").rglob("*"))  # feeds only
