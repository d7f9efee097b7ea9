"""Which posts go into which feed document: the feed key (kind, name, format,
page and canonical query options) and the cut of the index it names."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

from feedsvc import content
from feedsvc.collect import Views
from feedsvc.config import Config
from feedsvc.errors import NotFound, QueryError
from feedsvc.model import FORMATS, Entry, Feed, Person
from feedsvc.posts import Post

log = logging.getLogger(__name__)
OPENCC = ("s2t", "t2s")
MAX_TERMS = 20


@dataclass(frozen=True)
class FeedKey:
    kind: str                   # "category", "all" or "tag"
    name: str                   # slug, "all" or tag
    fmt: str
    page: int = 1
    limit: int | None = None    # None: the configured limit
    filter: tuple[str, ...] = ()
    filterout: tuple[str, ...] = ()
    opencc: str | None = None

    def query(self) -> str:
        """Canonical query string: sorted, deduplicated, defaults left out."""
        pairs = []
        if self.filter:
            pairs.append(("filter", ",".join(self.filter)))
        if self.filterout:
            pairs.append(("filterout", ",".join(self.filterout)))
        if self.limit is not None:
            pairs.append(("limit", str(self.limit)))
        if self.opencc:
            pairs.append(("opencc", self.opencc))
        return urlencode(pairs, quote_via=quote, safe=",")

    def path(self, page: int | None = None) -> str:
        page = self.page if page is None else page
        base = "/tags/" + quote(self.name, safe="") if self.kind == "tag" else "/feeds/" + self.name
        return f"{base}/{page}.{self.fmt}" if page > 1 else f"{base}.{self.fmt}"

    def url(self, base: str, page: int | None = None) -> str:
        q = self.query()
        return base + self.path(page) + (f"?{q}" if q else "")

    def cache_id(self) -> str:
        return f"{self.fmt}:{self.path()}?{self.query()}"


def _terms(value: str, name: str) -> tuple[str, ...]:
    terms = sorted({t.strip().casefold() for t in value.split(",") if t.strip()})
    if not terms:
        raise QueryError(f"{name} needs at least one term")
    if len(terms) > MAX_TERMS or any(len(t) > 100 for t in terms):
        raise QueryError(f"{name} allows at most {MAX_TERMS} terms of 100 characters")
    return tuple(terms)


def parse_query(key: FeedKey, args: Mapping[str, str], config: Config) -> FeedKey:
    """Apply the known query parameters; unknown ones (utm_* …) are ignored."""
    changes: dict[str, object] = {}
    if "limit" in args:
        raw = args["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= config.max_limit:
            raise QueryError(f"limit must be a whole number from 1 to {config.max_limit}")
        changes["limit"] = int(raw)
    for name in ("filter", "filterout"):
        if name in args:
            changes[name] = _terms(args[name], name)
    if "opencc" in args:
        if args["opencc"] not in OPENCC:
            raise QueryError("opencc must be s2t or t2s")
        changes["opencc"] = args["opencc"]
    return replace(key, **changes)  # type: ignore[arg-type]


def exists(key: FeedKey, config: Config, views: Views) -> bool:
    if key.fmt not in FORMATS:
        return False
    if key.kind == "category":
        return key.name in config.categories
    if key.kind == "tag":
        return key.name in views.tags
    return key.kind == "all"


def posts_of(key: FeedKey, views: Views, config: Config) -> list[Post]:
    if key.kind == "category":
        posts = views.categories.get(key.name, [])
    elif key.kind == "tag":
        posts = views.tags.get(key.name, [])
    else:
        # The site-wide feed carries the configured categories only.
        posts = views.in_any(frozenset(config.categories))
    if key.filter or key.filterout:
        posts = [p for p in posts if _keep(p, key)]
    return posts


def _keep(post: Post, key: FeedKey) -> bool:
    hay = [post.title.casefold(), *(c.casefold() for c in post.categories),
           *(t.casefold() for t in post.tags)]
    def hit(terms: tuple[str, ...]) -> bool:
        return any(term in h for term in terms for h in hay)
    return (not key.filter or hit(key.filter)) and not (key.filterout and hit(key.filterout))


@dataclass(frozen=True)
class Selection:
    """The posts of one feed document, and what identifies its version."""
    key: FeedKey
    posts: tuple[Post, ...]
    pages: int
    updated: dt.datetime          # feed-level updated (newest entry, or the site's newest)
    modified: dt.datetime         # Last-Modified: newest change, mtimes included

    def fingerprint(self) -> str:
        parts = [self.key.cache_id(), str(self.pages), self.updated.isoformat()]
        parts += [f"{p.rel}:{p.mtime_ns}:{p.size}:{p.guid}" for p in self.posts]
        return "\n".join(parts)


def limit_of(key: FeedKey, config: Config) -> int:
    if key.limit is not None:
        return key.limit
    return config.category_limit(key.name) if key.kind == "category" else config.limit


def select(key: FeedKey, views: Views, config: Config) -> Selection:
    if not exists(key, config, views):
        raise NotFound(f"no feed at {key.path()}")
    posts = posts_of(key, views, config)
    limit = limit_of(key, config)
    pages = max(1, math.ceil(len(posts) / limit))
    if not 1 <= key.page <= pages:
        raise NotFound(f"page {key.page} is past the end (the feed has {pages})")
    chosen = tuple(posts[(key.page - 1) * limit: key.page * limit])
    if chosen:
        updated = max(p.updated for p in chosen)
        modified = max(p.modified for p in chosen)
    else:
        updated = modified = views.newest_updated
    return Selection(key, chosen, pages, updated, modified)


def feed_model(sel: Selection, config: Config) -> Feed:
    """Render the selected posts into the format-neutral model."""
    key, site = sel.key, config.site
    title, description, link = _describe(key, config)
    entries = tuple(e for e in (_entry(p, key, config) for p in sel.posts) if e is not None)
    author = site.author
    return Feed(
        id=replace(key, page=1).url(config.feeds_url),
        title=_text(title, key),
        description=_text(description, key),
        link=link,
        self_url=key.url(config.feeds_url),
        updated=sel.updated,
        author=Person(author.name, author.email, author.uri) if author else Person(site.title),
        entries=entries,
        language=site.language,
        ttl_seconds=config.category_max_age(key.name) if key.kind == "category" else config.max_age,
        pages=_page_links(key, sel.pages, config),
        hub=config.websub.hub if config.websub else None,
    )


def _describe(key: FeedKey, config: Config) -> tuple[str, str, str]:
    site = config.site
    if key.kind == "category":
        cat = config.categories[key.name]
        return cat.title, cat.description or cat.title, cat.link or site.url
    if key.kind == "tag":
        return f"{site.title} · {key.name}", f"{site.title}: {key.name}", site.url
    return site.title, site.description or site.title, site.url


def _page_links(key: FeedKey, pages: int, config: Config) -> dict[str, str]:
    if pages == 1:
        return {}
    links = {"first": key.url(config.feeds_url, 1), "last": key.url(config.feeds_url, pages)}
    if key.page > 1:
        links["previous"] = key.url(config.feeds_url, key.page - 1)
    if key.page < pages:
        links["next"] = key.url(config.feeds_url, key.page + 1)
    return links


def _entry(post: Post, key: FeedKey, config: Config) -> Entry | None:
    try:
        body = content.render(post, config.site.url, config.summary_length)
    except (OSError, ValueError) as e:
        # The file changed or vanished since it was indexed; the watcher catches up.
        log.warning("cannot render %s: %s", post.rel, e)
        return None
    return Entry(
        id=post.guid,
        title=_text(post.title, key),
        link=post.url,
        published=post.date,
        updated=post.updated,
        summary=_text(body.summary, key),
        content_html=content.convert_html(body.html, key.opencc),
        categories=tuple(dict.fromkeys(content.strip_illegal(c) for c in (*post.categories, *post.tags))),
    )


def _text(text: str, key: FeedKey) -> str:
    return content.convert_text(content.strip_illegal(text), key.opencc)
