"""The plain data passed from feed selection to the writers: one model, three formats."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

FORMATS = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime
    summary: str
    content_html: str | None          # None: the summary only (excerpt_only)
    categories: tuple[str, ...] = ()
    author: Person | None = None
    image: str | None = None          # absolute URL: media:thumbnail/content, JSON image
    permalink_guid: bool = True       # RSS guid isPermaLink (false for jekyll-feed ids)
    via: str | None = None            # the original article of a collected post
    source: SourceFeed | None = None  # the upstream feed it came from
    copies: tuple[str, ...] = ()      # original links of the same story from other sources


@dataclass(frozen=True)
class SourceFeed:
    url: str
    title: str


@dataclass(frozen=True)
class Feed:
    id: str
    title: str
    description: str
    link: str                   # the HTML page the feed belongs to
    self_url: str               # the exact representation (page and parameters)
    updated: dt.datetime
    author: Person
    entries: tuple[Entry, ...]
    language: str | None = None
    ttl_seconds: int = 300
    pages: dict[str, str] = field(default_factory=dict)   # RFC 5005 rel → URL
    archive: bool = False       # an archive document (RFC 5005 §4: <fh:archive/>)
    hub: str | None = None
    icon: str | None = None
    logo: str | None = None
