"""Post body → safe HTML with absolute URLs, and a summary (DESIGN.md "Content")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lxml import etree
from support import FIXTURES, make_site

from feedsvc import content
from feedsvc.config import Config, load_config
from feedsvc.feeds import FeedKey
from feedsvc.posts import read_post
from feedsvc.service import FeedService

POSTS = FIXTURES / "posts"
SITE = "https://news.example.com"
PAGE = f"{SITE}/kunmingribao/2022/04/01/"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(make_site(tmp_path / "site"))


def rendered(config: Config, case: str) -> content.Rendered:
    shutil.copyfile(POSTS / case, config.posts_dir / case)
    post = read_post(config.posts_dir, case, config)
    return content.render(post, config.site.url, config.summary_length)


def test_markdown_is_commonmark_with_raw_html_and_autolinks(config: Config) -> None:
    html = rendered(config, "2022-04-01-markdown-mix.md").html
    assert "<p>Raw HTML paragraph.</p>" in html
    assert "<em>CommonMark</em>" in html
    assert ('<a href="http://finews.zning.xyz/share?infoCode=NW1&amp;x=2">'
            "http://finews.zning.xyz/share?infoCode=NW1&amp;x=2</a>") in html


def test_every_link_is_absolute(config: Config) -> None:
    html = rendered(config, "2022-04-01-markdown-mix.md").html
    assert '<a href="https://finews.withounder.com/">返回首页</a>' in html    # //host → https
    assert f'<a href="{SITE}/about.html">about</a>' in html                  # /x → site url
    assert f'<a href="{PAGE}other.html">sibling</a>' in html                 # x → permalink
    assert f'<a href="{SITE}/kunmingribao/2022/04/index.html">up</a>' in html
    assert f'<a href="{PAGE}markdown-mix.html#top">anchor</a>' in html


def test_html_post_is_used_as_is_with_srcset_and_poster_kept_and_absolute(config: Config) -> None:
    html = rendered(config, "2022-04-01-html-post.html").html
    assert "<p>Used *as is*, not Markdown.</p>" in html
    assert (f'srcset="{PAGE}pic.jpg 1x, {SITE}/img/pic@2x.jpg 2x, '
            'https://cdn.example.com/pic@3x.jpg 3x"') in html
    assert f'src="{PAGE}pic.jpg"' in html
    assert f'poster="{SITE}/img/poster.jpg"' in html
    assert 'src="https://cdn.example.com/v.mp4"' in html
    assert "<figcaption>图注</figcaption>" in html


def test_scripts_styles_handlers_and_javascript_urls_are_removed(config: Config) -> None:
    html = rendered(config, "2022-04-01-dangerous.md").html
    lowered = html.lower()
    for bad in ("<script", "alert(1)", "<style", "color:red", "onclick", "onmouseover",
                "onerror", "javascript:", "<iframe", "steal"):
        assert bad not in lowered, bad
    assert "Hello" in html and "end</p>" in html
    assert f'<img src="{PAGE}x.png">' in html


@pytest.mark.parametrize(("raw", "kept"), [
    ('<img srcset="javascript:alert(1) 1x, /ok.jpg 2x">', f'<img srcset="{SITE}/ok.jpg 2x">'),
    ('<video poster="javascript:alert(1)"></video>', "<video></video>"),
    ('<a href="data:text/html,x">d</a>', "<a>d</a>"),
    ('<a href="mailto:ed@example.com">m</a>', '<a href="mailto:ed@example.com">m</a>'),
])
def test_only_safe_urls_survive(raw: str, kept: str) -> None:
    assert content.sanitise(raw, PAGE + "p.html", SITE) == kept


ILLEGAL = [chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + ["\ufffe", "\uffff",
                                                                            "\ud800", "\udfff"]


@pytest.mark.parametrize("char", ILLEGAL, ids=[f"U+{ord(c):04X}" for c in ILLEGAL])
def test_xml_illegal_characters_are_removed(char: str) -> None:
    assert content.strip_illegal(f"a{char}b\t\n\r") == "ab\t\n\r"
    assert char not in content.sanitise(f"<p>a{char}b</p>", PAGE, SITE)


def test_illegal_characters_never_reach_a_feed(config: Config) -> None:
    html = rendered(config, "2022-04-01-control-chars.md").html
    assert html == "<p>Body with NUL BEL VT FF ESC US NONCHAR TAB\tkept</p>\n"
    service = FeedService(config)
    service.start()
    for fmt in ("rss", "atom"):
        root = etree.fromstring(service.document(FeedKey("category", "kunmingribao", fmt)).body)
        assert "Control characters in the title" in etree.tostring(root, encoding="unicode")
    doc = json.loads(service.document(FeedKey("category", "kunmingribao", "json")).body)
    assert doc["items"][0]["title"] == "Control characters in the title"


def test_control_characters_in_ids_and_terms_cannot_break_a_feed(config: Config) -> None:
    # feedgen refuses a whole document for one such character in any element.
    rendered(config, "2022-04-01-control-chars-in-guid.md")
    service = FeedService(config)
    service.start()
    rss = etree.fromstring(service.document(FeedKey("category", "kunmingribao", "rss")).body)
    item = rss.find("channel/item")
    assert item is not None
    assert item.findtext("guid") == "urn:xy"
    assert item.findtext("title") == "Controlcharacters in the guid and terms"
    assert [c.text for c in item.findall("category")] == ["kunmingribao", "bc", "tag"]


def test_cdata_end_is_kept_as_text(config: Config) -> None:
    html = rendered(config, "2022-04-01-cdata-end.md").html
    assert "Text with ]]&gt; and" in html
    service = FeedService(config)
    service.start()
    for fmt in ("rss", "atom"):
        root = etree.fromstring(service.document(FeedKey("category", "kunmingribao", fmt)).body)
        texts = "".join(root.itertext())
        assert "A title with ]]> inside" in texts
        assert "Text with ]]&gt; and" in texts        # the escaped HTML, as text


@pytest.mark.parametrize(("case", "summary"), [
    ("2022-04-01-excerpt.md", "The editor wrote this summary."),
    ("2022-04-01-description.md", "The description is the summary."),
    ("2022-04-01-markdown-mix.md", "Raw HTML paragraph."),
])
def test_summary_from_excerpt_description_or_first_paragraph(config: Config, case: str,
                                                             summary: str) -> None:
    assert rendered(config, case).summary == summary


def test_summary_from_an_excerpt_never_holds_script_text(config: Config) -> None:
    assert rendered(config, "2022-04-01-excerpt-with-script.md").summary == "Hi there"


def test_summary_is_cut_by_characters_with_an_ellipsis(config: Config) -> None:
    summary = rendered(config, "2022-04-01-long-first-paragraph.md").summary
    assert len(summary) == 201 and summary.endswith("…")
    assert summary[:-1] == ("园区招商引资工作取得实质性突破。" * 13)[:200]
    assert len(summary.encode()) > 200


@pytest.mark.parametrize(("text", "length", "cut"), [
    ("short", 200, "short"),
    ("一二三四五", 5, "一二三四五"),
    ("一二三四五六", 5, "一二三四五…"),
    ("word  and\nspace", 200, "word and space"),
    ("ab cd", 3, "ab…"),
])
def test_cut(text: str, length: int, cut: str) -> None:
    assert content.cut(text, length) == cut


def test_summary_length_is_configurable(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site", config={"summary_length": 10}))
    assert rendered(config, "2022-04-01-long-first-paragraph.md").summary == "园区招商引资工作取得…"


def test_text_of_reads_a_marked_section_python_s_html_parser_rejects() -> None:
    # CPython's HTMLParser raises AssertionError on `<![CDATAk[`: upstream HTML
    # with it must still give its text, not fail the whole source.
    first, everything = content.text_of("<p>春城<![CDATAk[花开</p><p>第二段</p>")
    assert first.startswith("春城")
    assert "第二段" in everything
