"""Feed model → RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes. Pure: no Flask, no
clock, no I/O; the same model always gives the same bytes.

feedgen writes RSS and Atom. Its traps (DESIGN.md) are handled here: entries
appended in order, `updated`/`lastBuildDate` always set, `content type="html"`,
link order chosen per format, RSS dates formatted under a lock because
feedgen switches the process-wide locale, and extra atom:links (paging, hub)
added to RSS through a small extension since its RSS writer keeps only self.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feedsvc import dates
from feedsvc.model import Entry, Feed, Person, SourceFeed

ATOM_NS = "http://www.w3.org/2005/Atom"
FH_NS = "http://purl.org/syndication/history/1.0"   # RFC 5005
# The JSON Feed extension for RFC 5005's links (JSON Feed 1.1: keys starting with "_").
JSON_HISTORY = "_rfc5005"
_feedgen_lock = threading.Lock()


class _RssAtomLinks(BaseExtension):  # type: ignore[misc]
    """Adds atom:link elements (paging, hub) to an RSS channel, before its items."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []

    def extend_ns(self) -> dict[str, str]:
        return {"atom": ATOM_NS}

    def extend_rss(self, rss_feed: Any) -> Any:
        channel = rss_feed[0]
        first_item = channel.find("item")
        at = list(channel).index(first_item) if first_item is not None else len(channel)
        for i, (rel, href) in enumerate(self.links):
            el = etree.Element(f"{{{ATOM_NS}}}link", href=href, rel=rel)
            channel.insert(at + i, el)
        return rss_feed


class _Archive(BaseExtension):  # type: ignore[misc]
    """<fh:archive/> (RFC 5005 §4): this document is an archive, not the feed
    to subscribe to. First in the Atom feed / RSS channel, before any entry."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS}

    def _mark(self, parent: Any) -> None:
        parent.insert(0, etree.Element(f"{{{FH_NS}}}archive"))

    def extend_atom(self, atom_feed: Any) -> Any:
        self._mark(atom_feed)
        return atom_feed

    def extend_rss(self, rss_feed: Any) -> Any:
        self._mark(rss_feed[0])
        return rss_feed


class _AtomProvenance(BaseExtension):  # type: ignore[misc]
    """An Atom entry's link rel="via" (the original article) and <source>
    (RFC 4287 4.2.11: id, title and self link of the feed it came from).
    Not through feedgen: its entry writer drops the rel of every link (so a
    via link would read as a second alternate) and its source has no id."""

    def __init__(self) -> None:
        self.via: str | None = None
        self.feed: SourceFeed | None = None
        self.copies: tuple[str, ...] = ()

    def extend_atom(self, entry: Any) -> Any:
        at = max((i + 1 for i, el in enumerate(entry) if el.tag == f"{{{ATOM_NS}}}link"),
                 default=len(entry))
        links = [("via", self.via)] if self.via else []
        # The same story from other sources: RFC 4287's "related".
        links += [("related", url) for url in self.copies]
        for i, (rel, href) in enumerate(links):
            entry.insert(at + i, etree.Element(f"{{{ATOM_NS}}}link", href=href, rel=rel,
                                               type="text/html"))
        if self.feed is not None:
            source = etree.SubElement(entry, f"{{{ATOM_NS}}}source")
            etree.SubElement(source, f"{{{ATOM_NS}}}id").text = self.feed.url
            etree.SubElement(source, f"{{{ATOM_NS}}}title").text = self.feed.title
            etree.SubElement(source, f"{{{ATOM_NS}}}link", rel="self", href=self.feed.url)
        return entry


class _RssRelated(BaseExtension):  # type: ignore[misc]
    """An RSS item's other sources of the same story: atom:link rel="related"
    (RSS 2.0 has no element of its own; the atom namespace is declared on the
    channel already, for its self link), after the item's own elements."""

    def __init__(self) -> None:
        self.copies: tuple[str, ...] = ()

    def extend_rss(self, item: Any) -> Any:
        for url in self.copies:
            etree.SubElement(item, f"{{{ATOM_NS}}}link", href=url, rel="related",
                             type="text/html")
        return item


def _generator(feed: Feed, fmt: str) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(feed.id)
    fg.title(feed.title)
    fg.description(feed.description or feed.title)
    if fmt == "rss":
        # feedgen makes the last link() the RSS channel <link>: self first.
        fg.link(href=feed.self_url, rel="self", type="application/rss+xml")
        fg.link(href=feed.link, rel="alternate")
    else:
        # Readers such as feed-extractor take the first Atom <link>: alternate first.
        fg.link(href=feed.link, rel="alternate", type="text/html")
        fg.link(href=feed.self_url, rel="self", type="application/atom+xml")
        for rel, href in _extra_links(feed):
            fg.link(href=href, rel=rel)
    if feed.language:
        fg.language(feed.language)
    fg.updated(feed.updated)
    fg.lastBuildDate(feed.updated)
    author = {"name": feed.author.name}
    if feed.author.email:
        author["email"] = feed.author.email
        fg.managingEditor(f"{feed.author.email} ({feed.author.name})")
    if feed.author.uri:
        author["uri"] = feed.author.uri
    fg.author(author)
    fg.generator("feedsvc")
    fg.ttl(max(1, math.ceil(feed.ttl_seconds / 60)))
    _images(fg, feed, fmt)
    if feed.archive:
        fg.register_extension("feedsvc_archive", _Archive, None, atom=True, rss=True)
    # Extensions first: feedgen gives them only to entries added afterwards.
    if any(e.image for e in feed.entries):
        fg.load_extension("media", atom=True, rss=True)
    if fmt == "rss":
        fg.load_extension("dc", atom=False, rss=True)
    for entry in feed.entries:
        _add_entry(fg, entry, fmt)
    return fg


def _images(fg: FeedGenerator, feed: Feed, fmt: str) -> None:
    """Site icon/logo: Atom <icon> (small, square) and <logo> (wide); RSS has one
    <image>, for which the logo fits better when there is one."""
    if fmt == "rss":
        image = feed.logo or feed.icon
        if image:
            fg.image(url=image, title=feed.title, link=feed.link)
        return
    if feed.icon:
        fg.icon(feed.icon)
    if feed.logo:
        fg.logo(feed.logo)


def _extra_links(feed: Feed) -> list[tuple[str, str]]:
    links = sorted(feed.pages.items())
    if feed.hub:
        links.append(("hub", feed.hub))
    return links


def _add_entry(fg: FeedGenerator, entry: Entry, fmt: str) -> None:
    fe = fg.add_entry(order="append")
    fe.id(entry.id)
    fe.guid(entry.id, permalink=entry.permalink_guid and entry.id == entry.link)
    fe.title(entry.title)
    fe.link(href=entry.link, rel="alternate", type="text/html")
    fe.published(entry.published)
    fe.updated(entry.updated)
    fe.description(entry.summary or entry.title, isSummary=True)
    if entry.content_html is not None:      # None with excerpt_only or ?brief=
        fe.content(entry.content_html, type="html")
    if entry.author:
        _author(fe, entry.author, fmt)
    if entry.categories:
        # One call: feedgen rebuilds its RSS list of every category on each call,
        # so one call per term is quadratic (issue 15: 3,000 terms took 579 ms).
        fe.category([{"term": term} for term in entry.categories])
    if entry.image:
        # group=None: directly in the entry, as jekyll-feed writes them.
        fe.media.thumbnail(url=entry.image, group=None)
        fe.media.content(url=entry.image, medium="image", group=None)
    _provenance(fe, entry, fmt)


def _provenance(fe: Any, entry: Entry, fmt: str) -> None:
    """Where a collected entry came from: RSS <source>, Atom rel="via" and <source>;
    the same story's other sources: rel="related" links (RSS: atom:link)."""
    if fmt == "rss":
        if entry.source:
            fe.source(url=entry.source.url, title=entry.source.title)
        if entry.copies:
            fe.register_extension("feedsvc_related", _RssRelated, atom=False, rss=True)
            fe.feedsvc_related.copies = entry.copies
        return
    if entry.via or entry.source or entry.copies:
        fe.register_extension("feedsvc_provenance", _AtomProvenance, atom=True, rss=False)
        ext = fe.feedsvc_provenance
        ext.via, ext.feed, ext.copies = entry.via, entry.source, entry.copies


def _author(fe: Any, person: Person, fmt: str) -> None:
    if fmt == "rss":
        # RSS <author> must be an e-mail address; the name goes in dc:creator,
        # which is what readers show.
        fe.dc.dc_creator(person.name)
        return
    author = {"name": person.name}
    if person.email:
        author["email"] = person.email
    if person.uri:
        author["uri"] = person.uri
    fe.author(author)


def rss(feed: Feed) -> bytes:
    fg = _generator(feed, "rss")
    fg.register_extension("feedsvc_links", _RssAtomLinks, None, atom=False, rss=True)
    fg.feedsvc_links.links = _extra_links(feed)
    with _feedgen_lock:
        return bytes(fg.rss_str(pretty=True))


def atom(feed: Feed) -> bytes:
    fg = _generator(feed, "atom")
    with _feedgen_lock:
        return bytes(fg.atom_str(pretty=True))


def json_feed(feed: Feed) -> bytes:
    doc: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": feed.title,
        "home_page_url": feed.link,
        "feed_url": feed.self_url,
        "description": feed.description,
    }
    if feed.language:
        doc["language"] = feed.language
    doc["authors"] = [_json_author(feed.author)]
    # JSON Feed: `icon` is the large (512×512) image, `favicon` the small one.
    if feed.logo or feed.icon:
        doc["icon"] = feed.logo or feed.icon
    if feed.icon:
        doc["favicon"] = feed.icon
    if feed.hub:
        doc["hubs"] = [{"type": "WebSub", "url": feed.hub}]
    if feed.pages or feed.archive:
        # RFC 5005's links by their rel names ("prev-archive" → "prev_archive").
        history: dict[str, Any] = {"about": "https://www.rfc-editor.org/rfc/rfc5005"}
        if feed.archive:
            history["archive"] = True
        history.update({rel.replace("-", "_"): url for rel, url in sorted(feed.pages.items())})
        doc[JSON_HISTORY] = history
    doc["items"] = [_json_item(e) for e in feed.entries]
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def _json_author(person: Person) -> dict[str, str]:
    return {"name": person.name, **({"url": person.uri} if person.uri else {})}


def _json_item(entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry.id, "url": entry.link, "title": entry.title}
    if entry.content_html is not None:
        item["content_html"] = entry.content_html
    else:
        item["content_text"] = entry.summary or entry.title   # one of the two is required
    item["summary"] = entry.summary
    if entry.image:
        item["image"] = entry.image
    item["date_published"] = dates.rfc3339(entry.published)
    item["date_modified"] = dates.rfc3339(entry.updated)
    if entry.author:
        item["authors"] = [_json_author(entry.author)]
    if entry.categories:
        item["tags"] = list(entry.categories)
    if entry.via:
        item["external_url"] = entry.via
    if entry.copies:
        # A JSON Feed extension (keys starting with "_"): the story's other sources.
        item["_feedsvc"] = {"copies": list(entry.copies)}
    return item


WRITERS = {"rss": rss, "atom": atom, "json": json_feed}


def build(feed: Feed, fmt: str) -> bytes:
    return WRITERS[fmt](feed)
