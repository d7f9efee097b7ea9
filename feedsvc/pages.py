"""The pages for people: the index (`/`) with autodiscovery links, the OPML
file, and the HTML view a browser gets when it navigates to a feed URL.

Rendered from Jinja2 templates (autoescaped) out of the service's views and
feed model, once per index version; `feedsvc build` writes the same bytes.
Flask stays in app.py: this module only turns data into Documents.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import heapq
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache

import jinja2

from feedsvc import dates, opml
from feedsvc.config import Config
from feedsvc.errors import NotFound
from feedsvc.feeds import FeedKey, feed_model, html_page, jekyll_keys, select, url_tags
from feedsvc.index import IndexUnavailable, NotReady, Stale, Views
from feedsvc.model import FORMATS, Entry, Feed
from feedsvc.posts import Post
from feedsvc.service import STALE_TRIES, FeedService
from feedsvc.store import Document, MemoryStore
from feedsvc.version import Snapshot

HTML = "text/html; charset=utf-8"
FORMAT_NAMES = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
MEMO_MAX, MEMO_BYTES = 512, 16 * 2**20
# Tag feeds grow with the posts (3,000 tags made `/` 1 MiB, issue 15): `/`
# lists the INDEX_TAGS most used, the tag list (/tags.html) all of them,
# TAG_PAGE a page, most used first. Beside index.html, not in /tags/: that
# folder holds feeds only.
INDEX_TAGS, TAG_PAGE = 100, 500

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("feedsvc", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


@cache
def content_security_policy() -> str:
    """CSP of the HTML pages: post content is sanitised already; this is the
    second line. Only our own inline script runs (allowed by its hash, taken
    from the template, which renders it verbatim); images and media from
    posts load from anywhere on the web."""
    assert _env.loader is not None
    source = _env.loader.get_source(_env, "base.html")[0]
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(source)) or "'none'"
    return ("default-src 'none'; img-src http: https: data:; media-src http: https:; "
            f"style-src 'unsafe-inline'; script-src {hashes}; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")


def wants_page(sec_fetch_dest: str | None) -> bool:
    """A browser navigating to the URL: `Sec-Fetch-Dest: document`, a header
    that browsers set themselves and feed readers never send."""
    return (sec_fetch_dest or "").strip().lower() == "document"


# -- what the templates show -------------------------------------------------
@dataclass(frozen=True)
class FeedLink:
    fmt: str
    label: str
    url: str
    media_type: str               # without parameters, as <link type> wants it


@dataclass(frozen=True)
class Item:
    title: str
    url: str
    when: str                     # local date and time in the feed's zone
    iso: str                      # RFC 3339, for <time datetime>
    summary: str = ""
    content_html: str = ""        # already sanitised by content.py
    tags: tuple[str, ...] = ()
    copies: tuple[str, ...] = ()  # the same story from other sources (http(s) links only)


@dataclass(frozen=True)
class Listing:
    """One subscribable feed on the index page."""
    title: str
    description: str
    html_url: str
    count: int
    newest: Item | None
    links: tuple[FeedLink, ...]


@dataclass(frozen=True)
class TagListing:
    title: str
    count: int
    links: tuple[FeedLink, ...]


def links_for(key: FeedKey, config: Config) -> tuple[FeedLink, ...]:
    return tuple(FeedLink(fmt, FORMAT_NAMES[fmt], FeedKey(key.kind, key.name, fmt).url(
        config.feeds_url), FORMATS[fmt].split(";")[0]) for fmt in FORMATS)


def zone_of(key: FeedKey, config: Config) -> str:
    """The zone a feed's dates are shown in: its category's, else the site's."""
    cat = config.categories.get(key.name) if key.kind == "category" else None
    return (cat.timezone if cat and cat.timezone else None) or config.site.timezone


def local(value: dt.datetime, zone: str) -> tuple[str, str]:
    when = value.astimezone(dates.zone(zone))
    return f"{when:%Y-%m-%d %H:%M}", dates.rfc3339(when)


def post_item(post: Post, zone: str) -> Item:
    when, iso = local(post.date, zone)
    return Item(post.title, post.url, when, iso)


def entry_item(entry: Entry, zone: str, config: Config) -> Item:
    when, iso = local(entry.published, zone)
    # People read category titles, not slugs.
    terms = (config.categories[t].title if t in config.categories else t
             for t in entry.categories)
    # A link people click on this site's own page: never a javascript: or data: URL
    # that a post's source_url might hold.
    copies = tuple(u for u in entry.copies if u.startswith(("https://", "http://")))
    return Item(entry.title, entry.link, when, iso, entry.summary,
                entry.content_html if entry.content_html is not None else "",
                tuple(dict.fromkeys(terms)), copies)


def _listing(key: FeedKey, title: str, description: str, views: Views,
             config: Config, count: int | None = None) -> Listing:
    newest = views.posts(key.kind, key.name, 0, 1)
    item = post_item(newest[0], zone_of(key, config)) if newest else None
    return Listing(title, description, html_page(key, config),
                   views.count(key.kind, key.name) if count is None else count, item,
                   links_for(key, config))


def index_context(config: Config, views: Views) -> dict[str, object]:
    site = config.site
    categories = [_listing(FeedKey("category", slug, "rss"), cat.title, cat.description or "",
                           views, config)
                  for slug, cat in config.categories.items()]
    all_feed = _listing(FeedKey("all", "all", "rss"), f"{site.title} · 全部",
                        site.description or "本站全部已发布的文章", views, config)
    tags, total = tag_listings(config, views, INDEX_TAGS)
    return {
        "site": site,
        "jekyll_feeds": jekyll_listings(config, views),
        "lang": site.language or "zh-CN",
        "categories": categories,
        "all_feed": all_feed,
        "tags": tags,
        "tag_total": total,
        "tag_list_url": tag_list_url(config, 1),
        "opml_url": config.feeds_url + opml.PATH,
        "home_url": config.feeds_url + "/",
        "example": (categories[0] if categories else all_feed).links[0].url,
        "max_limit": config.max_limit,
        "updated": local(views.newest_updated, site.timezone)[0],
    }


def tag_listings(config: Config, views: Views, count: int) -> tuple[list[TagListing], int]:
    """The `count` most used tags (then by name), and how many tags have a
    feed URL in all."""
    counts = views.tag_counts()
    names = url_tags(views)
    top = heapq.nsmallest(count, names, key=lambda t: (-counts[t], t))
    return [_tag_listing(t, counts[t], config) for t in top], len(names)


def ordered_tags(views: Views) -> list[tuple[str, int]]:
    """Every tag with a feed URL and its post count, most used first, then by name."""
    counts = views.tag_counts()
    return sorted(((t, counts[t]) for t in url_tags(views)), key=lambda tc: (-tc[1], tc[0]))


def _tag_listing(tag: str, count: int, config: Config) -> TagListing:
    return TagListing(tag, count, links_for(FeedKey("tag", tag, "rss"), config))


def tag_list_url(config: Config, page: int) -> str:
    return config.feeds_url + tag_list_path(page)


def tag_list_path(page: int) -> str:
    """/tags.html for page 1, /tags-N.html after it."""
    return "/tags.html" if page == 1 else f"/tags-{page}.html"


def tag_pages(views: Views) -> int:
    return _pages_for(len(url_tags(views)))


def _pages_for(tags: int) -> int:
    return max(1, -(-tags // TAG_PAGE))


def tag_list_context(config: Config, ordered: list[tuple[str, int]], page: int
                     ) -> dict[str, object]:
    pages = _pages_for(len(ordered))
    if not 1 <= page <= pages:
        raise NotFound(f"the tag list has {pages} page(s)")
    first = (page - 1) * TAG_PAGE
    return {
        "site": config.site,
        "lang": config.site.language or "zh-CN",
        "tags": [_tag_listing(t, n, config) for t, n in ordered[first:first + TAG_PAGE]],
        "tag_total": len(ordered),
        "page": page,
        "pages": pages,
        "first": first + 1,
        "prev_url": tag_list_url(config, page - 1) if page > 1 else None,
        "next_url": tag_list_url(config, page + 1) if page < pages else None,
        "home_url": config.feeds_url + "/",
    }
def jekyll_listings(config: Config, views: Views) -> list[tuple[str, str]]:
    """(title, URL) of jekyll-feed's site-wide and category feeds, for a site
    with jekyll-feed compatibility: the site-wide one first, as `{% feed_meta %}`
    puts it in every page's head. (Its tag feeds are on the page with the tags.)"""
    site = config.site.title
    return [(site if key.kind == "all" else config.categories[key.name].title,
             key.url(config.feeds_url))
            for key in jekyll_keys(config, views) if key.kind != "tag"]


def feed_context(feed: Feed, key: FeedKey, pages: int, config: Config) -> dict[str, object]:
    zone = zone_of(key, config)
    return {
        "site": config.site,
        "lang": config.site.language or "zh-CN",
        "feed": feed,
        "format": FORMAT_NAMES[key.fmt],
        "current": key.fmt,
        "media_type": FORMATS[key.fmt].split(";")[0],
        "items": [entry_item(e, zone, config) for e in feed.entries],
        "others": [FeedLink(fmt, FORMAT_NAMES[fmt], _with_format(key, fmt).url(config.feeds_url),
                            FORMATS[fmt].split(";")[0]) for fmt in FORMATS],
        "zone": zone,
        "archive": key.archive,
        "pages": pages,
        "home_url": config.feeds_url + "/",
        "opencc": key.opencc,
    }


def _with_format(key: FeedKey, fmt: str) -> FeedKey:
    return replace(key, fmt=fmt)


def render(template: str, context: Mapping[str, object]) -> bytes:
    return _env.get_template(template).render(context).encode("utf-8")


def newest_change(config: Config, views: Views) -> dt.datetime:
    """Last-Modified of the index and OPML: the newest post change or config edit."""
    newest = views.newest_modified()
    try:
        mtime = config.path.stat().st_mtime
    except OSError:
        return newest
    return max(newest, dt.datetime.fromtimestamp(int(mtime), dt.UTC))


# -- rendered once per version -------------------------------------------------
class Pages:
    """The index, OPML and browser views of one FeedService, each rendered once
    per snapshot version (version.py) and reused until it changes."""

    def __init__(self, service: FeedService) -> None:
        self.service = service
        # (name, version) → document, bounded in count and bytes (store.py).
        self._memo = MemoryStore(MEMO_MAX, MEMO_BYTES)
        self._tag_order: tuple[object, list[tuple[str, int]]] | None = None

    def index(self, snap: Snapshot | None = None) -> Document:
        return self._cached("index", snap, lambda config, views: Document.of(
            render("index.html", index_context(config, views)), HTML,
            newest_change(config, views)))

    def tag_list(self, page: int, snap: Snapshot | None = None) -> Document:
        """Page `page` of the list of every tag feed (NotFound past the end)."""
        return self._cached(f"tags:{page}", snap, lambda config, views: Document.of(
            render("tags.html", tag_list_context(config, self._ordered(views), page)), HTML,
            newest_change(config, views)))

    def _ordered(self, views: Views) -> list[tuple[str, int]]:
        """ordered_tags(views), sorted once per index version for all the pages."""
        memo = self._tag_order           # one read: threads may replace it meanwhile
        if memo is None or memo[0] != views.version:
            memo = self._tag_order = (views.version, ordered_tags(views))
        return memo[1]

    def opml(self, snap: Snapshot | None = None) -> Document:
        return self._cached("opml", snap, lambda config, views: Document.of(
            opml.build(config), opml.MIMETYPE, newest_change(config, views)))

    def feed_view(self, key: FeedKey, snap: Snapshot | None = None) -> Document:
        """The HTML rendering of the feed document `key` names (NotFound as it)."""
        def make(config: Config, views: Views) -> Document:
            sel = select(key, views, config)
            context = feed_context(feed_model(sel, config), key, sel.archives, config)
            return Document.of(render("feed.html", context), HTML, sel.modified)
        # Not memoised with query options: they make views without number (SECURITY.md S11).
        return self._cached(None if key.query() else "view:" + key.cache_id(), snap, make)

    def _cached(self, name: str | None, snap: Snapshot | None,
                make: Callable[[Config, Views], Document]) -> Document:
        """The page at `snap` (read again at a newer snapshot if the index moves
        on meanwhile: one version per page, never two)."""
        snap = snap or self.service.snapshot()
        for _ in range(STALE_TRIES):
            try:
                return self._cached_at(name, snap, make)
            except Stale:
                snap = self.service.snapshot()
        raise IndexUnavailable("the index changes faster than a page can be read")

    def _cached_at(self, name: str | None, snap: Snapshot,
                   make: Callable[[Config, Views], Document]) -> Document:
        if not snap.views.ready:
            raise NotReady("the posts are being indexed")
        if name is None:
            return make(snap.config, snap.views)
        doc = self._memo.get((name, snap.version))
        if doc is None:
            doc = make(snap.config, snap.views)
            self._memo.put((name, snap.version), doc)
        return doc
