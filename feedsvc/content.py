"""Post body → safe HTML with absolute URLs, and a plain-text summary.

Markdown is CommonMark with raw HTML allowed; the HTML is then cleaned by nh3
(Ammonia), whose attribute filter is also where every URL is made absolute,
so there is one pass and no regexes over HTML.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urljoin

import nh3
import opencc
from markdown_it import MarkdownIt

from feedsvc.posts import Post, read_body
from feedsvc.xmlchars import strip_illegal as strip_illegal  # re-exported: feeds.py uses it

URL_ATTRIBUTES = frozenset({"href", "src", "poster", "cite", "longdesc"})
TAGS = nh3.ALLOWED_TAGS | {"video", "audio", "source", "picture", "figure", "figcaption"}
ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"class", "title", "lang", "dir"},
    # nh3's defaults drop srcset and poster; news posts use both.
    "img": set(nh3.ALLOWED_ATTRIBUTES["img"]) | {"srcset", "sizes", "loading"},
    "source": {"src", "srcset", "type", "media", "sizes"},
    "video": {"src", "poster", "controls", "width", "height", "preload", "muted", "loop"},
    "audio": {"src", "controls", "preload", "muted", "loop"},
}
_markdown = MarkdownIt("commonmark", {"html": True})
# A tag in nh3's output: attribute values are always double-quoted there.
HTML_TAG = re.compile(r'(<(?:[^>"]|"[^"]*")*>)')
FIRST_IMG_SRC = re.compile(r'<img\b[^>]*?\ssrc="(https?://[^"]+)"', re.IGNORECASE)
# Liquid's strip_html, which jekyll-feed applies to titles.
STRIP_HTML_BLOCKS = re.compile(r"<script.*?</script>|<!--.*?-->|<style.*?</style>", re.S | re.I)
STRIP_HTML_TAGS = re.compile(r"<.*?>", re.S)


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    summary: str
    image: str | None = None      # the first <img> of the body, absolute


def title_text(title: str) -> str:
    """A title as readers should show it: tags stripped and whitespace folded as
    jekyll-feed does (`strip_html | normalize_whitespace`), entities decoded
    (jekyll-feed's titles are type="html")."""
    text = STRIP_HTML_TAGS.sub("", STRIP_HTML_BLOCKS.sub("", title))
    return " ".join(html_lib.unescape(text).split())


def absolute_url(url: str, page_url: str, site_url: str) -> str:
    """Make one URL absolute; protocol-relative URLs become https."""
    url = url.strip()
    if url.startswith("//"):
        return "https:" + url
    if url.startswith("/"):
        return site_url + url
    if not url or url.startswith("#") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url):
        return urljoin(page_url, url) if url.startswith("#") else url
    return urljoin(page_url, url)


def absolute_srcset(value: str, page_url: str, site_url: str) -> str:
    out = []
    for candidate in value.split(","):
        parts = candidate.split()
        if not parts:
            continue
        url = absolute_url(parts[0], page_url, site_url)
        # nh3 checks the scheme of href/src but not of srcset candidates.
        if url.lower().startswith(("http://", "https://")):
            out.append(" ".join([url, *parts[1:]]))
    return ", ".join(out)


def sanitise(html: str, page_url: str, site_url: str) -> str:
    """Clean HTML (no scripts, styles, handlers, javascript: URLs) with absolute URLs."""

    def fix(tag: str, attr: str, value: str) -> str | None:
        if attr in URL_ATTRIBUTES:
            return absolute_url(value, page_url, site_url)
        if attr == "srcset":
            return absolute_srcset(value, page_url, site_url)
        return value

    cleaned = nh3.clean(strip_illegal(html), tags=TAGS, attributes=ATTRIBUTES,
                        attribute_filter=fix, link_rel=None,
                        clean_content_tags={"script", "style"})
    return str(cleaned)


class _FirstParagraph(HTMLParser):
    """Collects the text of the first non-empty <p>, and all text as a fallback."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.first: str | None = None
        self.current: list[str] = []
        self.all: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self.depth += 1
        elif tag == "br":
            self.all.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self.depth:
            self.depth -= 1
            text = " ".join("".join(self.current).split())
            if text and self.first is None:
                self.first = text
            self.current = []

    def handle_data(self, data: str) -> None:
        self.all.append(data)
        if self.depth:
            self.current.append(data)


def text_of(html: str) -> tuple[str, str]:
    """(text of the first paragraph, all text) of an HTML fragment."""
    try:
        return _text_of(html)
    except AssertionError:
        # Python's HTMLParser (before 3.13) raises AssertionError on a marked
        # section with an unknown keyword (`<![CDATAk[`, found by the fuzzer in
        # an upstream item). html5ever, behind nh3, reads any input as a browser
        # does; what it keeps of paragraphs and text is the same.
        return _text_of(nh3.clean(html, tags={"p", "br"}, clean_content_tags={"script", "style"}))


def _text_of(html: str) -> tuple[str, str]:
    parser = _FirstParagraph()
    parser.feed(html)
    parser.close()
    everything = " ".join("".join(parser.all).split())
    return parser.first or everything, everything


def cut(text: str, length: int) -> str:
    """Cut by characters (not bytes), with an ellipsis when anything was dropped."""
    text = " ".join(text.split())
    return text if len(text) <= length else text[:length].rstrip() + "…"


def body_html(text: str, kind: str) -> str:
    return _markdown.render(text) if kind == "markdown" else text


def render(post: Post, site_url: str, summary_length: int) -> Rendered:
    """The post's safe HTML and summary, from its file as it is now (tools and
    tests; the index renders from the body it read with the record)."""
    return render_body(read_body(post.path), post.kind, post.url, post.excerpt, site_url,
                       summary_length)


def render_body(body: str, kind: str, page_url: str, excerpt: str | None, site_url: str,
                summary_length: int) -> Rendered:
    """A body's safe HTML and summary."""
    # Stripped before Markdown too: CommonMark turns NUL into U+FFFD, a visible mark.
    html = sanitise(body_html(strip_illegal(body), kind), page_url, site_url)
    # An excerpt may hold HTML too: its text, never the text of a <script> in it.
    source = text_of(sanitise(excerpt, page_url, site_url))[1] if excerpt else text_of(html)[0]
    # nh3's output quotes every attribute with '"', and has made src absolute.
    img = FIRST_IMG_SRC.search(html)
    return Rendered(html=html, summary=strip_illegal(cut(source, summary_length)),
                    image=html_lib.unescape(img.group(1)) if img else None)


@lru_cache(maxsize=4)
def _converter(mode: str) -> opencc.OpenCC:
    return opencc.OpenCC(mode)


def convert_text(text: str, mode: str | None) -> str:
    """Simplified ↔ Traditional Chinese (mode 's2t' or 't2s'); None leaves text as is."""
    return str(_converter(mode).convert(text)) if mode and text else text


def convert_html(html: str, mode: str | None) -> str:
    """Convert the text of sanitised HTML, never its tags, attributes or URLs."""
    if not mode:
        return html
    parts = HTML_TAG.split(html)
    return "".join(p if i % 2 else convert_text(p, mode) for i, p in enumerate(parts))
