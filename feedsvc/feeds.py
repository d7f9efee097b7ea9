"""Which posts go into which feed document: the feed key (kind, name, format,
page and canonical query options) and the cut of the index it names."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode, urlsplit

from feedsvc import content, dates, filters
from feedsvc.config import Config
from feedsvc.errors import NotFound, QueryError
from feedsvc.index import Views
from feedsvc.model import FORMATS, Entry, Feed, Person, SourceFeed
from feedsvc.posts import Post

OPENCC = ("s2t", "t2s")
FIELD_PARAMETERS = {f"{kind}_{field}": field for kind in ("filter", "filterout")
                    for field in filters.FIELDS}
PARAMETERS = frozenset({"limit", "filter", "filterout", "opencc", "filter_time",
                        "filter_case_sensitive", "brief", *FIELD_PARAMETERS})
LIMIT_RE = re.compile(r"[0-9]{1,6}")
NUMBER_RE = re.compile(r"[0-9]{1,10}")
# Filters look at this many newest entries of a feed (× max_limit), as RSSHub
# filters the items a route fetched: a filter never scans a million posts.
WINDOW_FACTOR = 10
MAX_FILTER_TIME = 10 * 366 * 86400
BRIEF_MIN, BRIEF_MAX = 100, 100_000   # RSSHub asks for at least 100 characters
Fields = tuple[tuple[str, filters.Pattern], ...]


@dataclass(frozen=True)
class FeedKey:
    kind: str                   # "category", "all" or "tag"
    name: str                   # slug, "all" or tag
    fmt: str
    archive: int = 0            # 0: the current document; N: archive N, 1 the oldest (RFC 5005 §4)
    limit: int | None = None    # None: the configured limit
    filter: filters.Pattern | None = None
    filterout: filters.Pattern | None = None
    fields: Fields = ()         # filter_<field>: each given one must match
    fields_out: Fields = ()     # filterout_<field>: any given one that matches drops
    case_sensitive: bool = False
    filter_time: int | None = None      # seconds, as in the URL
    since: dt.datetime | None = None    # its edge, rounded to max_age: in the cache key only
    brief: int | None = None
    opencc: str | None = None
    jekyll_path: str | None = None   # a jekyll-feed URL (below feeds_url): its current document

    def filtered(self) -> bool:
        return bool(self.filter or self.filterout or self.fields or self.fields_out
                    or self.since)

    def query(self) -> str:
        """Canonical query string: sorted, deduplicated, defaults left out."""
        pairs: list[tuple[str, str]] = []
        if self.brief is not None:
            pairs.append(("brief", str(self.brief)))
        if self.filter:
            pairs.append(("filter", self.filter.text()))
        pairs += [(f"filter_{f}", p.text()) for f, p in self.fields]
        if self.case_sensitive:
            pairs.append(("filter_case_sensitive", "true"))
        if self.filter_time is not None:
            pairs.append(("filter_time", str(self.filter_time)))
        if self.filterout:
            pairs.append(("filterout", self.filterout.text()))
        pairs += [(f"filterout_{f}", p.text()) for f, p in self.fields_out]
        if self.limit is not None:
            pairs.append(("limit", str(self.limit)))
        if self.opencc:
            pairs.append(("opencc", self.opencc))
        return urlencode(sorted(pairs), quote_via=quote, safe=",")

    def path(self, archive: int | None = None) -> str:
        """The URL path of this document, or of archive `archive` of its feed."""
        archive = self.archive if archive is None else archive
        base = "/tags/" + quote(self.name, safe="") if self.kind == "tag" else "/feeds/" + self.name
        if archive:
            return f"{base}/archive/{archive}.{self.fmt}"
        return self.jekyll_path or f"{base}.{self.fmt}"

    def url(self, base: str, archive: int | None = None) -> str:
        """The absolute URL; an archive's never has a query (archives take no options)."""
        q = "" if (self.archive if archive is None else archive) else self.query()
        return base + self.path(archive) + (f"?{q}" if q else "")

    def cache_id(self) -> str:
        since = f"#since={self.since.isoformat()}" if self.since else ""
        return f"{self.fmt}:{self.path()}?{self.query()}{since}"

    def expires(self, max_age: int) -> dt.datetime | None:
        """When the filter_time edge moves on (the document is current until then)."""
        if self.since is None or self.filter_time is None:
            return None
        return self.since + dt.timedelta(seconds=self.filter_time + max_age)


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


def _number(raw: str, name: str, low: int, high: int, unit: str = "") -> int:
    if not NUMBER_RE.fullmatch(raw) or not low <= int(raw) <= high:
        raise QueryError(f"{name} must be a whole number from {low} to {high}{unit}")
    return int(raw)


def max_age_of(key: FeedKey, config: Config) -> int:
    return config.category_max_age(key.name) if key.kind == "category" else config.max_age


def window_edge(seconds: int, max_age: int, now: dt.datetime) -> dt.datetime:
    """now − seconds, rounded down to a multiple of max_age: the same edge (and
    so the same bytes) for every request within one max_age."""
    step = max(1, max_age)
    edge = math.floor((now.timestamp() - seconds) / step) * step
    return dt.datetime.fromtimestamp(edge, dt.UTC)


def parse_query(key: FeedKey, args: Iterable[tuple[str, str]], config: Config,
                now: dt.datetime | None = None) -> FeedKey:
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
            changes[name] = filters.parse(given[name], name)
    fields = {n: filters.parse(given[n], n) for n in sorted(FIELD_PARAMETERS) if n in given}
    changes["fields"] = tuple((FIELD_PARAMETERS[n], p) for n, p in fields.items()
                              if n.startswith("filter_"))
    changes["fields_out"] = tuple((FIELD_PARAMETERS[n], p) for n, p in fields.items()
                                  if n.startswith("filterout_"))
    if "filter_case_sensitive" in given and (fields or "filter" in given or "filterout" in given):
        changes["case_sensitive"] = filters.parse_bool(given["filter_case_sensitive"],
                                                       "filter_case_sensitive")
    if "filter_time" in given:
        seconds = _number(_single(given["filter_time"], "filter_time"), "filter_time",
                          1, MAX_FILTER_TIME, " (seconds)")
        changes["filter_time"] = seconds
        changes["since"] = window_edge(seconds, max_age_of(key, config),
                                       now or dt.datetime.now(dt.UTC))
    if "brief" in given:
        changes["brief"] = _number(_single(given["brief"], "brief"), "brief",
                                   BRIEF_MIN, BRIEF_MAX, " (characters)")
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
    newest WINDOW_FACTOR × max_limit (unfiltered feeds take pages straight from the index)."""
    posts = views.posts(key.kind, key.name, 0, WINDOW_FACTOR * config.max_limit)
    bodies = dict(zip((p.rel for p in posts), views.rendered(posts), strict=True)) \
        if any(f == "description" for f, _ in (*key.fields, *key.fields_out)) \
        or key.filter or key.filterout else {}
    return [p for p in posts if _keep(p, key, config, bodies)]


def _keep(post: Post, key: FeedKey, config: Config,
          bodies: dict[str, content.Rendered]) -> bool:
    """RSSHub's rules: `filter` keeps an entry matching in any field, each
    filter_<field> must match its field, `filterout` and each filterout_<field>
    drop an entry that matches."""
    if key.since is not None and post.date < key.since:
        return False
    texts = _FieldTexts(post, config, bodies)
    cs = key.case_sensitive
    if key.filter and not key.filter.search(texts.every(), cs):
        return False
    if any(not p.search(texts.of(f), cs) for f, p in key.fields):
        return False
    if key.filterout and key.filterout.search(texts.every(), cs):
        return False
    return not any(p.search(texts.of(f), cs) for f, p in key.fields_out)


class _FieldTexts:
    """The texts of one post that filters look at; the description (the
    entry's summary, what RSS <description> carries) is rendered only if asked."""

    def __init__(self, post: Post, config: Config, bodies: dict[str, content.Rendered]) -> None:
        self.post, self.config, self.bodies = post, config, bodies

    def of(self, field: str) -> list[str]:
        post = self.post
        if field == "title":
            return [post.title]
        if field == "category":
            return [*post.categories, *post.tags]
        if field == "author":
            return [author_of(post, self.config).name]
        body = self.bodies.get(post.rel)
        return [body.summary if body else ""]

    def every(self) -> Iterable[str]:
        # Lazily: a match in the title spares rendering the post.
        yield self.post.title
        yield from self.of("category")
        yield from self.of("description")


def author_of(post: Post, config: Config) -> Person:
    """The entry's author: the site's author, else the site's title."""
    author = config.site.author
    return Person(author.name, author.email, author.uri) if author else Person(config.site.title)


@dataclass(frozen=True)
class Selection:
    """The posts of one feed document, their bodies as indexed with them, and
    what identifies its version."""
    key: FeedKey
    posts: tuple[Post, ...]
    archives: int                 # how many archive documents the feed has
    updated: dt.datetime          # feed-level updated (newest entry, or the site's newest)
    modified: dt.datetime         # Last-Modified: newest change, mtimes included
    rendered: tuple[content.Rendered, ...] = ()
    full: bool = False            # an archive whose numbers are all given out (never grows)
    # Per post: the links of its story's other copies (site-wide and tag feeds only).
    copies: tuple[tuple[str, ...], ...] = ()

    def fingerprint(self) -> str:
        # An archive's bytes depend on the count only through its next-archive link.
        count = str(self.full) if self.key.archive else str(self.archives)
        parts = [self.key.cache_id(), count, self.updated.isoformat()]
        parts += [f"{p.rel}:{p.mtime_ns}:{p.size}:{p.guid}" for p in self.posts]
        parts += [f"{i} copies {' '.join(urls)}" for i, urls in enumerate(self.copies) if urls]
        return "\n".join(parts)


def limit_of(key: FeedKey, config: Config) -> int:
    if key.limit is not None:
        return key.limit
    return config.category_limit(key.name) if key.kind == "category" else config.limit


def archive_size(key: FeedKey, config: Config) -> int:
    """Posts per archive of a feed: `archive_size`, else the feed's configured
    limit (never a ?limit= of a request)."""
    if config.archive_size:
        return config.archive_size
    return config.category_limit(key.name) if key.kind == "category" else config.limit


def archive_complete(key: FeedKey, views: Views, config: Config) -> bool:
    """Whether archive `key.archive` is full: every number of it is given
    out, so no new post ever goes into it (the newest one may still be filling)."""
    return key.archive * archive_size(key, config) <= views.archive_taken(key.kind, key.name)


def select(key: FeedKey, views: Views, config: Config, bodies: bool = True) -> Selection:
    """The posts of the document `key` names, with their rendered bodies, all
    from the one version `views` is (Stale if the index moved meanwhile).
    bodies=False: without the bodies (what identifies the version only)."""
    if not exists(key, config, views):
        raise NotFound(f"no feed at {key.path()}")
    size = archive_size(key, config)
    taken = views.archive_taken(key.kind, key.name)
    archives = -(-taken // size)
    limit = limit_of(key, config)
    if key.archive:
        if not 1 <= key.archive <= archives:
            raise NotFound(f"archive {key.archive} is past the end (the feed has "
                           f"{archives} archive{'s' * (archives != 1)})")
        chosen = tuple(views.archive_posts(key.kind, key.name, key.archive, size))
    elif key.filtered():
        chosen = tuple(posts_of(key, views, config)[:limit])
    else:
        chosen = tuple(views.posts(key.kind, key.name, 0, limit))
    if chosen:
        updated = max(p.updated for p in chosen)
        modified = max(p.modified for p in chosen)
    elif key.archive:
        # An archive whose posts were all deleted: nothing on the site may move its bytes.
        updated = modified = dates.EPOCH
    else:
        updated = modified = views.newest_updated
    # Each category keeps its own copy of a story (it is that paper's); the
    # site-wide and tag feeds carry one and say where the others are.
    copies = tuple(views.copies(chosen)) if key.kind != "category" else ()
    return Selection(key, chosen, archives, updated, modified,
                     tuple(views.rendered(chosen)) if bodies else (),
                     full=bool(key.archive) and key.archive * size <= taken,
                     copies=copies if any(copies) else ())


def feed_model(sel: Selection, config: Config) -> Feed:
    """Render the selected posts into the format-neutral model."""
    key, site = sel.key, config.site
    title, description, link = _describe(key, config)
    copies = sel.copies or ((),) * len(sel.posts)
    entries = tuple(_entry(p, r, key, config, c)
                    for p, r, c in zip(sel.posts, sel.rendered, copies, strict=True))
    author = site.author
    return Feed(
        icon=site.icon,
        logo=site.logo,
        id=replace(key, archive=0).url(config.feeds_url),
        title=_text(title, key),
        description=_text(description, key),
        link=link,
        self_url=key.url(config.feeds_url),
        updated=sel.updated,
        author=Person(author.name, author.email, author.uri) if author else Person(site.title),
        entries=entries,
        language=site.language,
        ttl_seconds=max_age_of(key, config),
        pages=history_links(key, sel.archives, sel.full, config),
        archive=bool(key.archive),
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


def history_links(key: FeedKey, archives: int, full: bool, config: Config) -> dict[str, str]:
    """RFC 5005 links: the current document's prev-archive is the newest
    archive; an archive links the current document and its neighbours. A full
    archive links its successor at once, even before the next post begins it
    (a 404 until then): so the bytes of an archive, once full, never change."""
    base = config.feeds_url
    if not key.archive:
        return {"prev-archive": key.url(base, archives)} if archives else {}
    links = {"current": replace(key, archive=0, jekyll_path=None).url(base)}
    if key.archive > 1:
        links["prev-archive"] = key.url(base, key.archive - 1)
    if key.archive < archives or full:
        links["next-archive"] = key.url(base, key.archive + 1)
    return links


def _entry(post: Post, body: content.Rendered, key: FeedKey, config: Config,
           copies: tuple[str, ...] = ()) -> Entry:
    # The body is the one indexed with this record: never read from disk here,
    # where the file may have changed since the posts were selected.
    summary, html = body.summary, content.convert_html(body.html, key.opencc)
    content_html: str | None = None if config.excerpt_only or post.excerpt_only else html
    if key.brief is not None:
        # RSSHub's brief: the text of the whole body, cut, in place of the content.
        summary, content_html = content.cut(content.text_of(body.html)[1], key.brief), None
    # jekyll-feed shows a singular `category:` alone, not the folder's categories.
    terms = (post.category,) if config.jekyll_feed and post.category else post.categories
    return Entry(
        id=post.guid,
        # A title made only of characters XML forbids would be empty: feedgen refuses
        # an entry without a title and the whole feed would fail.
        title=_text(content.title_text(post.title), key) or post.url,
        link=entry_link(post, config),
        published=post.date,
        updated=post.updated,
        summary=_text(summary, key),
        content_html=content_html,
        via=post.source_url,
        source=_source_feed(post),
        copies=tuple(content.strip_illegal(url) for url in copies),
        categories=tuple(dict.fromkeys(
            content.strip_illegal(c) for c in (*terms, *post.tags))),
        author=entry_author(post, config),
        image=post.image or body.image,
        permalink_guid=config.jekyll_feed is None and post.guid == post.url,
    )


def entry_link(post: Post, config: Config) -> str:
    """Our permalink, or the original article when the post's first category
    that says so (else the site) asks for it: one link per post in every feed."""
    if not post.source_url:
        return post.url
    choice = next((config.categories[c].entry_link for c in post.categories
                   if c in config.categories and config.categories[c].entry_link), None)
    return post.source_url if (choice or config.entry_link) == "source" else post.url


def _source_feed(post: Post) -> SourceFeed | None:
    if not post.source_feed:
        return None
    title = post.source_title or urlsplit(post.source_feed).netloc or post.source_feed
    return SourceFeed(post.source_feed, content.strip_illegal(title))


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
