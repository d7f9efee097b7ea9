"""Which posts go into which feed document: the feed key (kind, name, format,
page and canonical query options) and the cut of the index it names."""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

from feedsvc import content
from feedsvc.config import Config
from feedsvc.errors import NotFound, QueryError
from feedsvc.index import Views
from feedsvc.model import FORMATS, Entry, Feed, Person
from feedsvc.posts import Post

OPENCC = ("s2t", "t2s")
PARAMETERS = frozenset({"limit", "filter", "filterout", "opencc"})
MAX_TERMS = 20
MAX_TERM_LENGTH = 100
LIMIT_RE = re.compile(r"[0-9]{1,6}")


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
    jekyll_path: str | None = None   # a jekyll-feed URL (below feeds_url): its page 1 lives there

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
        if self.jekyll_path and page == 1:
            return self.jekyll_path
        base = "/tags/" + quote(self.name, safe="") if self.kind == "tag" else "/feeds/" + self.name
        return f"{base}/{page}.{self.fmt}" if page > 1 else f"{base}.{self.fmt}"

    def url(self, base: str, page: int | None = None) -> str:
        q = self.query()
        return base + self.path(page) + (f"?{q}" if q else "")

    def cache_id(self) -> str:
        return f"{self.fmt}:{self.path()}?{self.query()}"


def _fold(text: str) -> str:
    """The form terms and titles are compared in: full-width letters and case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def _terms(values: list[str], name: str) -> tuple[str, ...]:
    """Comma-separated terms (from one or several `name=` parameters), folded,
    deduplicated and sorted; a term containing another one is dropped, since
    the shorter term matches wherever the longer one does."""
    folded = {_fold(t).strip() for v in values for t in v.split(",")}
    folded.discard("")
    if not folded:
        raise QueryError(f"{name} needs at least one term (comma-separated)")
    if len(folded) > MAX_TERMS or any(len(t) > MAX_TERM_LENGTH for t in folded):
        raise QueryError(f"{name} allows at most {MAX_TERMS} terms of "
                         f"{MAX_TERM_LENGTH} characters")
    return tuple(sorted(t for t in folded if not any(u != t and u in t for u in folded)))


def _single(values: list[str], name: str) -> str:
    if len(set(values)) > 1:
        raise QueryError(f"{name} is given more than once with different values")
    return values[0].strip()


def _limit(raw: str, key: FeedKey, config: Config) -> int | None:
    # Not str.isdigit(): it accepts '²' and other digits int() refuses.
    if not LIMIT_RE.fullmatch(raw) or not 1 <= int(raw) <= config.max_limit:
        raise QueryError(f"limit must be a whole number from 1 to {config.max_limit}")
    # The configured limit is the default: asking for it is the same document.
    return None if int(raw) == limit_of(key, config) else int(raw)


def parse_query(key: FeedKey, args: Iterable[tuple[str, str]], config: Config) -> FeedKey:
    """Apply the known query parameters, normalised so that equivalent requests
    give the same key; unknown ones (utm_* …) are ignored."""
    given: dict[str, list[str]] = {}
    for name, value in args:
        if name in PARAMETERS:
            given.setdefault(name, []).append(value)
    changes: dict[str, object] = {}
    if "limit" in given:
        changes["limit"] = _limit(_single(given["limit"], "limit"), key, config)
    for name in ("filter", "filterout"):
        if name in given:
            changes[name] = _terms(given[name], name)
    if "opencc" in given:
        mode = _single(given["opencc"], "opencc").lower()
        if mode not in OPENCC:
            raise QueryError("opencc must be s2t (简→繁) or t2s (繁→简)")
        changes["opencc"] = mode
    return replace(key, **changes)  # type: ignore[arg-type]


def url_tags(views: Views) -> list[str]:
    """The tags that can have a feed URL, sorted. A "/" in a tag cannot: servers
    decode %2F before routing, so /tags/TCP%2FIP.rss arrives as /tags/TCP/IP.rss."""
    return sorted(t for t in views.tag_counts() if "/" not in t)


def exists(key: FeedKey, config: Config, views: Views) -> bool:
    if key.fmt not in FORMATS:
        return False
    if key.jekyll_path and not _jekyll_exists(key, config, views):
        return False
    if key.kind == "category":
        return key.name in config.categories
    if key.kind == "tag":
        return views.has_tag(key.name)
    return key.kind == "all"


def _jekyll_exists(key: FeedKey, config: Config, views: Views) -> bool:
    feed = config.jekyll_feed
    if feed is None:
        return False
    return key.kind != "tag" or feed.has_tag_feed(key.name)


def jekyll_key(path: str, config: Config, views: Views) -> FeedKey | None:
    """The feed a jekyll-feed URL names (`/feed.xml`, `/feed/<category>.xml`,
    `/feed/by_tag/<tag>.xml` or as configured), served as Atom; None if none."""
    feed = config.jekyll_feed
    if feed is None:
        return None
    candidates = [("all", "all", feed.path)]
    if path.startswith(feed.tags_path) and path.endswith(".xml"):
        tag = path[len(feed.tags_path):-4]
        candidates.append(("tag", tag, feed.tag_path(tag)))
    if path.startswith("/feed/") and path.endswith(".xml"):
        slug = path[len("/feed/"):-4]
        candidates.append(("category", slug, feed.category_path(slug)))
    for kind, name, own in candidates:
        key = FeedKey(kind, name, "atom", jekyll_path=own)
        if own == path and exists(key, config, views):
            return key
    return None


def jekyll_keys(config: Config, views: Views) -> list[FeedKey]:
    """Every jekyll-feed URL this site has, as jekyll-feed would write them."""
    feed = config.jekyll_feed
    if feed is None:
        return []
    keys = [FeedKey("all", "all", "atom", jekyll_path=feed.path)]
    keys += [FeedKey("category", s, "atom", jekyll_path=feed.category_path(s))
             for s in config.categories]
    keys += [FeedKey("tag", t, "atom", jekyll_path=feed.tag_path(t))
             for t in sorted(views.tag_counts()) if feed.has_tag_feed(t)]
    return keys


# Query filters look at this many of a feed's newest posts (README: query options):
# a filter is a cut of what is current, and its cost must not grow with the archive.
FILTER_WINDOW = 1000


def posts_of(key: FeedKey, views: Views, config: Config) -> list[Post]:
    """The posts a filtered feed is cut from: the matching ones among the
    newest FILTER_WINDOW (unfiltered feeds take pages straight from the index)."""
    posts = views.posts(key.kind, key.name, 0, FILTER_WINDOW)
    return [p for p in posts if _keep(p, key)]


def _keep(post: Post, key: FeedKey) -> bool:
    hay = [_fold(post.title), *(_fold(c) for c in post.categories),
           *(_fold(t) for t in post.tags)]
    def hit(terms: tuple[str, ...]) -> bool:
        return any(term in h for term in terms for h in hay)
    return (not key.filter or hit(key.filter)) and not (key.filterout and hit(key.filterout))


@dataclass(frozen=True)
class Selection:
    """The posts of one feed document, their bodies as indexed with them, and
    what identifies its version."""
    key: FeedKey
    posts: tuple[Post, ...]
    pages: int
    updated: dt.datetime          # feed-level updated (newest entry, or the site's newest)
    modified: dt.datetime         # Last-Modified: newest change, mtimes included
    rendered: tuple[content.Rendered, ...] = ()

    def fingerprint(self) -> str:
        parts = [self.key.cache_id(), str(self.pages), self.updated.isoformat()]
        parts += [f"{p.rel}:{p.mtime_ns}:{p.size}:{p.guid}" for p in self.posts]
        return "\n".join(parts)


def limit_of(key: FeedKey, config: Config) -> int:
    if key.limit is not None:
        return key.limit
    return config.category_limit(key.name) if key.kind == "category" else config.limit


def select(key: FeedKey, views: Views, config: Config) -> Selection:
    """The posts of the document `key` names, with their rendered bodies, all
    from the one version `views` is (Stale if the index moved meanwhile)."""
    if not exists(key, config, views):
        raise NotFound(f"no feed at {key.path()}")
    limit = limit_of(key, config)
    start = (key.page - 1) * limit
    if key.filter or key.filterout:
        matching = posts_of(key, views, config)
        total, chosen = len(matching), tuple(matching[start:start + limit])
    else:
        total = views.count(key.kind, key.name)
        chosen = tuple(views.posts(key.kind, key.name, start, limit)) if start < total else ()
    pages = max(1, math.ceil(total / limit))
    if not 1 <= key.page <= pages:
        raise NotFound(f"page {key.page} is past the end (the feed has {pages})")
    if chosen:
        updated = max(p.updated for p in chosen)
        modified = max(p.modified for p in chosen)
    else:
        updated = modified = views.newest_updated
    return Selection(key, chosen, pages, updated, modified, tuple(views.rendered(chosen)))


def feed_model(sel: Selection, config: Config) -> Feed:
    """Render the selected posts into the format-neutral model."""
    key, site = sel.key, config.site
    title, description, link = _describe(key, config)
    entries = tuple(_entry(p, r, key, config)
                    for p, r in zip(sel.posts, sel.rendered, strict=True))
    author = site.author
    return Feed(
        icon=site.icon,
        logo=site.logo,
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


def home_page(config: Config) -> str:
    # With its slash: readers normalise "https://host" to "https://host/" and
    # some then disagree with the others about the feed's link.
    return config.site.url + "/"


def html_page(key: FeedKey, config: Config) -> str:
    """The HTML page a feed belongs to: its category's `link`, else the site."""
    cat = config.categories.get(key.name) if key.kind == "category" else None
    return (cat.link if cat else None) or home_page(config)


def _describe(key: FeedKey, config: Config) -> tuple[str, str, str]:
    site = config.site
    if key.kind == "category":
        cat = config.categories[key.name]
        return cat.title, cat.description or cat.title, html_page(key, config)
    if key.kind == "tag":
        return f"{site.title} · {key.name}", f"{site.title}: {key.name}", home_page(config)
    return site.title, site.description or site.title, home_page(config)


def _page_links(key: FeedKey, pages: int, config: Config) -> dict[str, str]:
    if pages == 1:
        return {}
    links = {"first": key.url(config.feeds_url, 1), "last": key.url(config.feeds_url, pages)}
    if key.page > 1:
        links["previous"] = key.url(config.feeds_url, key.page - 1)
    if key.page < pages:
        links["next"] = key.url(config.feeds_url, key.page + 1)
    return links


def _entry(post: Post, body: content.Rendered, key: FeedKey, config: Config) -> Entry:
    # The body is the one indexed with this record: never read from disk here,
    # where the file may have changed since the posts were selected.
    # jekyll-feed shows a singular `category:` alone, not the folder's categories.
    terms = (post.category,) if config.jekyll_feed and post.category else post.categories
    return Entry(
        id=post.guid,
        # A title made only of characters XML forbids would be empty: feedgen refuses
        # an entry without a title and the whole feed would fail.
        title=_text(content.title_text(post.title), key) or post.url,
        link=post.url,
        published=post.date,
        updated=post.updated,
        summary=_text(body.summary, key),
        content_html=None if config.excerpt_only else content.convert_html(body.html, key.opencc),
        categories=tuple(dict.fromkeys(
            content.strip_illegal(c) for c in (*terms, *post.tags))),
        author=entry_author(post, config),
        image=post.image or body.image,
        permalink_guid=config.jekyll_feed is None and post.guid == post.url,
    )


def entry_author(post: Post, config: Config) -> Person:
    """The post's `author` (a name, a key of _data/authors.yml, or name/email/uri),
    else the site's author, else the site's title."""
    if post.author:
        name, email, uri = post.author
        known = config.authors.get(name)
        if known and not (email or uri):
            return Person(known.name, known.email, known.uri)
        return Person(name, email, uri)
    author = config.site.author
    return Person(author.name, author.email, author.uri) if author else Person(config.site.title)


def _text(text: str, key: FeedKey) -> str:
    return content.convert_text(content.strip_illegal(text), key.opencc)
