"""Web-page sources: a news list page without a feed → items, by CSS or XPath
selectors (lxml + cssselect, never regexes over HTML), as FreshRSS's
"HTML + XPath" feeds do.

The rules come from config (config.PageRules, selectors already translated to
XPath there). A selector that matches nothing for the list, or for every item,
is an error of the source, never an empty success; an item missing its link
or with a date that does not parse costs that item, with a warning.
"""

from __future__ import annotations

import codecs
import datetime as dt
import html
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html

from feedsvc import dates
from feedsvc.config import PageRules, Selector
from feedsvc.errors import FetchError
from feedsvc.xmlchars import strip_illegal

# GB2312 and GBK pages often use characters only their superset GB18030 has.
SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030",
             "ascii": "utf-8", "us-ascii": "utf-8", "iso-8859-1": "windows-1252",
             "latin-1": "windows-1252"}
CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class PageItem:
    link: str
    title: str
    html: str
    date: dt.datetime | None


@dataclass(frozen=True)
class PageResult:
    items: list[PageItem]
    title: str                      # the page's <title>, for provenance
    warning: str | None = None      # items skipped, and why


def codec(name: str | None) -> str | None:
    """A Python codec for a charset label, or None if unknown."""
    if not name:
        return None
    name = name.strip().lower()
    name = SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode(body: bytes, content_type: str) -> str:
    """The page's text: the HTTP charset, else its <meta> charset, else UTF-8."""
    m = CHARSET.search(content_type or "")
    name = codec(m.group(1)) if m else None
    if name is None:
        name = codec(_meta_charset(body)) or "utf-8"
    if body.startswith(codecs.BOM_UTF8):
        name, body = "utf-8", body[len(codecs.BOM_UTF8):]
    return body.decode(name, errors="replace")


def _meta_charset(body: bytes) -> str | None:
    try:
        head = lxml.html.document_fromstring(body[:8192] or b"<html/>")
    except (lxml.etree.ParserError, ValueError):
        return None
    for meta in head.iter("meta"):
        if meta.get("charset"):
            return str(meta.get("charset"))
        if (meta.get("http-equiv") or "").lower() == "content-type":
            m = CHARSET.search(meta.get("content") or "")
            if m:
                return m.group(1)
    return None


def parse_page(body: bytes, content_type: str, url: str, rules: PageRules,
               tz: ZoneInfo) -> PageResult:
    """The items of a list page (FetchError when it is not HTML or a selector finds nothing)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind and kind not in HTML_TYPES:
        raise FetchError(f"not an HTML page (Content-Type {kind})")
    text = strip_illegal(decode(body, content_type))
    if not text.strip() or "<" not in text:
        raise FetchError("not an HTML page (no markup)")
    try:
        root = lxml.html.document_fromstring(text)
    except (lxml.etree.ParserError, ValueError) as e:
        raise FetchError(f"not an HTML page ({e})") from e
    nodes = _select(root, rules.items)
    if not nodes:
        raise FetchError(f"page.items: {rules.items.source!r} matched nothing on the page")
    items, skipped = [], Skipped()
    for node in nodes:
        item = _item(node, url, rules, tz, skipped)
        if item is not None:
            items.append(item)
    if not items:
        raise FetchError(f"no item could be read from {len(nodes)} matched by page.items: "
                         f"{skipped.describe()}")
    page_title = " ".join((root.findtext(".//title") or "").split())
    return PageResult(items, page_title, skipped.describe() or None)


class Skipped:
    """Per kind of problem, how many items were skipped, and the first example."""

    def __init__(self) -> None:
        self.reasons: dict[str, tuple[int, str]] = {}

    def add(self, kind: str, example: str) -> None:
        count, first = self.reasons.get(kind, (0, example))
        self.reasons[kind] = (count + 1, first)

    def describe(self) -> str:
        return "; ".join(f"{n} item(s) skipped: {first}" for n, first in self.reasons.values())


def _item(node: Any, base: str, rules: PageRules, tz: ZoneInfo,
          skipped: Skipped) -> PageItem | None:
    link = _link(node, base, rules)
    if link is None:
        skipped.add("link", f"page.link {rules.link.source!r} found no http(s) link")
        return None
    title = _text(node, rules.title)
    if not title:
        skipped.add("title", f"page.title {rules.title.source!r} found no text")
        return None
    date = None
    if rules.date is not None:
        raw = _date_text(node, rules.date)
        try:
            date = _parse_date(raw, rules.date_format, tz)
        except (ValueError, dates.DateError) as e:
            skipped.add("date", f"page.date {raw!r} does not parse ({e})")
            return None
    return PageItem(link=link, title=title, html=_body(node, rules), date=date)


@lru_cache(maxsize=256)
def _compiled(xpath: str) -> lxml.etree.XPath:
    return lxml.etree.XPath(xpath)


def _select(node: Any, selector: Selector) -> list[Any]:
    try:
        found = _compiled(selector.xpath)(node)
    except lxml.etree.XPathError as e:
        raise FetchError(f"selector {selector.source!r} failed: {e}") from e
    if isinstance(found, list):
        return found
    # An XPath such as string(…) or count(…): one value.
    return [str(found)] if found not in ("", None) else []


def _first(node: Any, selector: Selector) -> Any:
    found = _select(node, selector)
    return found[0] if found else None


def _text(node: Any, selector: Selector) -> str:
    value = _first(node, selector)
    if value is None:
        return ""
    if isinstance(value, str):
        return " ".join(value.split())
    return " ".join(value.text_content().split())


def _link(node: Any, base: str, rules: PageRules) -> str | None:
    value = _first(node, rules.link)
    if value is not None and not isinstance(value, str):
        # An element: its href, or the href of the first link inside it.
        anchor = value if value.get("href") is not None else next(value.iter("a"), None)
        value = anchor.get("href") if anchor is not None else None
    if not value or not str(value).strip():
        return None
    url = urljoin(base, str(value).strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def _date_text(node: Any, selector: Selector) -> str:
    value = _first(node, selector)
    if value is not None and not isinstance(value, str) and value.get("datetime"):
        return str(value.get("datetime")).strip()      # <time datetime="…">
    return _text(node, selector)


def _parse_date(raw: str, fmt: str | None, tz: ZoneInfo) -> dt.datetime:
    if not raw:
        raise ValueError("empty")
    if fmt is None:
        return dates.in_range(dates.parse_string(raw, tz), raw)
    parsed = dt.datetime.strptime(raw, fmt)
    if parsed.tzinfo is None:
        return dates.in_range(dates.localize(parsed, tz), raw)
    offset = parsed.utcoffset()
    assert offset is not None
    return dates.in_range(parsed.replace(tzinfo=dt.timezone(offset)), raw)


def _body(node: Any, rules: PageRules) -> str:
    if rules.content is not None:
        found = _first(node, rules.content)
        if found is not None and not isinstance(found, str):
            return str(lxml.html.tostring(found, encoding="unicode"))
    if rules.summary is not None:
        text = _text(node, rules.summary)
        if text:
            return f"<p>{html.escape(text)}</p>"
    return ""
