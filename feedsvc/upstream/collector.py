"""Upstream sources → post files: parse RSS/Atom (feedparser), JSON Feed
(by hand: feedparser reads it as zero entries) or a web page (pages.py), store
each new item as a Jekyll post in the shipped format (with its page's article
when the source asks for full text, fulltext.py, and its story when it
reprints another source's, stories.py), and remember per source what the
next conditional GET needs and how the last attempt went. Sources are
fetched in parallel, politely per host (polite.py).

A stored post is never deleted, and rewritten only by an upstream correction
of a file still as we wrote it (corrections.py): an admin's edit survives, a
post deleted by hand stays deleted, and an upstream that drops old items
leaves our feeds as they were.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import logging
import os
import re
import sys
import threading
import time
import xml.sax
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import feedparser
import yaml
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from feedsvc import atomic, content, dates, health, redact
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Category, Config, Source
from feedsvc.errors import FetchError, PostError
from feedsvc.index import Index, IndexUnavailable, durable
from feedsvc.index.sources import place as sources_place
from feedsvc.index.sources import store_for
from feedsvc.leader import Leader
from feedsvc.posts import MAX_POST_BYTES, parse_post, post_zone
from feedsvc.upstream import corrections
from feedsvc.upstream.fetch import Fetcher, Validators
from feedsvc.upstream.fulltext import FullText, FulltextError, FulltextLimits
from feedsvc.upstream.polite import HostGate
from feedsvc.upstream.state import SourceState, load_state, save_state

if TYPE_CHECKING:
    from feedsvc.index.pg import PgLeader
    from feedsvc.upstream.stories import Stories

log = logging.getLogger(__name__)
SEEN_MAX = 10_000              # guids remembered per source …
SEEN_MAX_BYTES = 1 * 2**20     # … and at most this many bytes of them (the state file is
                               # rewritten on every poll)
# Per item, so that every collected item becomes a post the reader accepts
# (front matter ≤ 64 KiB, file ≤ 8 MiB: posts.py), and per poll (issue 15).
MAX_GUID_BYTES = 1024          # a longer guid is replaced by its hash (still one per item)
MAX_TITLE_BYTES = 1024         # cut, with an ellipsis
MAX_LINK_BYTES = 4096          # a longer link is dropped
MAX_ITEM_TAGS = 30             # an item's categories: the first 30 …
MAX_TAG_BYTES = 100            # … of at most 100 bytes each (longer ones are dropped)
MAX_BODY_BYTES = 2 * 2**20     # cut (the sanitiser closes what the cut left open)
MAX_NEW_PER_POLL = 500         # new items stored per source and poll; the rest wait
PARALLEL = 8                   # sources fetched at once
PER_HOST = 2                   # requests to one host at once (feeds and article pages)
HOST_DELAY = 1.0               # seconds between the starts of two requests to one host
MAX_BACKOFF = 6 * 3600         # a failing source is still tried at least this often


# -- parsing --------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    guid: str
    link: str | None
    title: str
    html: str
    date: dt.datetime | None
    tags: tuple[str, ...] = ()
    updated: dt.datetime | None = None   # upstream's own last change, when it says
    date_problem: str | None = None   # a date was given but is unusable (stored as collected)

    def fingerprint(self) -> str:
        return corrections.fingerprint(self.title, self.html, self.link, self.tags, self.date)


@dataclass(frozen=True)
class Parsed:
    items: list[Item]
    warning: str | None = None      # read, but something was wrong with the document
    title: str = ""                 # the feed's own title, for provenance


def parse_feed(body: bytes, content_type: str, url: str, tz: ZoneInfo) -> Parsed:
    """The items of an RSS 2.0, Atom 1.0 or JSON Feed 1.x document (FetchError if none)."""
    if "json" in content_type.lower() or body.lstrip()[:1] == b"{":
        return _json_feed(body, url, tz)
    return _xml_feed(body, content_type, url, tz)


def _json_feed(body: bytes, url: str, tz: ZoneInfo) -> Parsed:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise FetchError(f"invalid JSON: {e}") from e
    except RecursionError as e:
        raise FetchError("invalid JSON: nested too deeply") from e
    if not isinstance(data, dict) or "jsonfeed.org/version" not in str(data.get("version", "")):
        raise FetchError("not a JSON Feed (no jsonfeed.org version)")
    if not isinstance(data.get("items"), list):
        raise FetchError("JSON Feed without an items list")
    items = [_json_item(it, url, tz) for it in data["items"] if isinstance(it, dict)]
    return Parsed([capped(it) for it in items if it is not None], title=_text(data.get("title")))


def _json_item(it: dict[str, Any], base: str, tz: ZoneInfo) -> Item | None:
    link = _http_url(base, it.get("url") or it.get("external_url"))
    guid = _text(it.get("id")) or link
    if not guid:
        return None
    body = it.get("content_html") or _plain_html(it.get("content_text")) or \
        html.escape(_text(it.get("summary")))
    raw = it.get("date_published") or it.get("date_modified")
    tags = it.get("tags")
    date, problem = _date(raw, None, tz)
    return Item(guid=guid, link=link, title=_text(it.get("title")), html=str(body),
                date=date, tags=_tags(tags if isinstance(tags, list) else []),
                updated=_date(it.get("date_modified"), None, tz)[0],
                date_problem=problem)


def _xml_feed(body: bytes, content_type: str, url: str, tz: ZoneInfo) -> Parsed:
    try:
        d = feedparser.parse(body, response_headers={"content-location": url,
                                                     "content-type": content_type or "text/xml"})
    except Exception as e:  # noqa: BLE001 - feedparser means never to raise; when it does
        # (bytes that are not UTF-8 in the encoding declaration: found by the fuzzer),
        # the body is unreadable, like any other invalid feed.
        raise FetchError(f"unreadable feed: {type(e).__name__}: {str(e)[:200]}") from e
    problem = d.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXException) and not d.entries:
        raise FetchError(f"invalid XML: {problem}")
    if not d.get("version") and not d.entries:
        raise FetchError("not an RSS, Atom or JSON feed")
    warning = None
    if isinstance(problem, xml.sax.SAXException):
        # feedparser's lenient parser still read items (an undefined &nbsp; is
        # common): keep them, and say so.
        warning = f"not well-formed XML ({problem}); {len(d.entries)} items read leniently"
        log.warning("%s: %s", redact.url(url), warning)
    items = [_xml_item(e, url, tz) for e in d.entries]
    return Parsed([capped(it) for it in items if it is not None], warning,
                  title=_text(d.get("feed", {}).get("title")))


def capped(item: Item) -> Item:
    """The item within the per-item limits (in UTF-8 bytes), so that the post it
    becomes is never one the reader then skips."""
    guid = item.guid
    if _size(guid) > MAX_GUID_BYTES:
        guid = "urn:feedsvc:sha256:" + hashlib.sha256(_bytes(guid)).hexdigest()
    link = item.link if item.link is None or _size(item.link) <= MAX_LINK_BYTES else None
    tags = tuple(t for t in item.tags if _size(t) <= MAX_TAG_BYTES)[:MAX_ITEM_TAGS]
    return dataclasses.replace(item, guid=guid, link=link, title=_cut(item.title, MAX_TITLE_BYTES),
                               html=_cut(item.html, MAX_BODY_BYTES, ""), tags=tags)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _size(text: str) -> int:
    return len(_bytes(text))


def _cut(text: str, limit: int, ellipsis: str = "…") -> str:
    """At most `limit` UTF-8 bytes, cut at a character boundary."""
    if _size(text) <= limit:
        return text
    room = limit - _size(ellipsis)
    return _bytes(text)[:room].decode("utf-8", "ignore") + ellipsis


def _xml_item(e: Any, base: str, tz: ZoneInfo) -> Item | None:
    link = _http_url(base, e.get("link"))
    guid = _text(e.get("id")) or link
    if not guid:
        return None
    title = _text(e.get("title"))
    if "html" in str(e.get("title_detail", {}).get("type", "")):
        title = content.text_of(title)[1]
    # feedparser keeps the raw date string; its *_parsed values are UTC only.
    raw = e.get("published") or e.get("updated") or e.get("created")
    parsed = e.get("published_parsed") or e.get("updated_parsed") or e.get("created_parsed")
    tags = [t.get("term") or t.get("label") for t in e.get("tags", [])]
    date, problem = _date(raw, parsed, tz)
    return Item(guid=guid, link=link, title=title, html=_xml_body(e), date=date,
                tags=_tags(tags), date_problem=problem,
                # dict.get: feedparser's own get() hands back `published` for a missing `updated`.
                updated=_date(dict.get(e, "updated"), dict.get(e, "updated_parsed"), tz)[0])


def _xml_body(e: Any) -> str:
    parts = e.get("content") or []
    first = parts[0] if parts else None
    chosen = next((c for c in parts if "html" in str(c.get("type", ""))), first)
    if chosen is None:
        detail = e.get("summary_detail") or {}
        chosen = {"value": e.get("summary", ""), "type": detail.get("type", "text/html")}
    value = str(chosen.get("value") or "")
    return value if "html" in str(chosen.get("type", "")) else _plain_html(value)


def _plain_html(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paras)


def _text(value: Any) -> str:
    return " ".join(content.strip_illegal(str(value)).split()) if value else ""


def _tags(values: Iterable[Any]) -> tuple[str, ...]:
    out = [_text(v) for v in values if isinstance(v, str)]
    return tuple(dict.fromkeys(t for t in out if t))


def _http_url(base: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    url = urljoin(base, value.strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def _date(raw: Any, parsed: time.struct_time | None, tz: ZoneInfo
          ) -> tuple[dt.datetime | None, str | None]:
    """The item's date with its own offset (the category's zone when it has
    none), or None and why there is none although the item gave one.

    Every date goes through the one normaliser and its range check (dates.py).
    A date read but out of range (`9999-12-31T23:59:59-12:00`, Go's zero time
    `0001-01-01`) is no date: the item is stored with the time it was collected,
    never with feedparser's guess (it reads year 0001 as 2001)."""
    problem = None
    if isinstance(raw, str) and raw.strip():
        try:
            return dates.normalise(raw, tz), None
        except dates.DateRangeError as e:
            return None, str(e)
        except dates.DateError as e:
            problem = str(e)
    if parsed is not None:
        # e.g. RFC 822 "EST", which feedparser knows as -0500 and we refuse to guess.
        try:
            return dates.from_utc_struct(parsed, raw), None
        except dates.DateError as e:
            return None, str(e)
    return None, problem


def parse_source(body: bytes, content_type: str, url: str, src: Source, tz: ZoneInfo) -> Parsed:
    """A feed, or a web page read by the source's selectors."""
    if src.page is None:
        return parse_feed(body, content_type, url, tz)
    from feedsvc.upstream import pages  # lxml.html and cssselect: for page sources only

    page = pages.parse_page(body, content_type, url, src.page, tz)
    items = [capped(Item(guid=it.link, link=it.link, title=it.title, html=it.html, date=it.date))
             for it in page.items]
    return Parsed(items, page.warning, title=page.title)


# -- post files -----------------------------------------------------------------
def category_folder(config: Config, slug: str) -> Path:
    """Where a category's collected posts go: a `_posts` folder of its own."""
    if config.posts_dir.name == "_posts":
        return config.posts_dir / slug
    return config.posts_dir / slug / "_posts"


def file_slug(item: Item) -> str:
    """ASCII words of the title (if any) and a hash of the guid: safe in any URL
    without percent-encoding, and unique per item."""
    words = re.findall(r"[a-z0-9]+", item.title.lower().encode("ascii", "ignore").decode())
    stem = "-".join(words)[:48].rstrip("-")
    digest = hashlib.sha256(item.guid.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{stem}-{digest}" if stem else digest


def post_text(item: Item, date: dt.datetime, cat: Category, source: Source,
              source_title: str = "", updated: dt.datetime | None = None,
              story: str | None = None) -> str:
    meta: dict[str, Any] = {"layout": "post"}
    # No title upstream: the start of the text says more than a hash would.
    meta["title"] = item.title or content.cut(content.text_of(item.html)[0], 60)
    if not meta["title"]:
        del meta["title"]
    meta["date"] = dates.jekyll(date)
    if updated is not None:
        meta["updated"] = dates.jekyll(updated)
    meta["categories"] = cat.slug
    # The sample post carries its category's title as a tag; source and item tags follow.
    meta["tags"] = list(dict.fromkeys((cat.title, *source.tags, *item.tags)))
    meta["source_guid"] = item.guid
    if item.link:
        meta["source_url"] = item.link
    # Provenance in the feeds: RSS <source url=…>, Atom <source>. A web page
    # is no feed (RSS wants "the XMLization of the source"): its items keep
    # source_url, which gives Atom's via link and JSON's external_url.
    if source.page is None:
        # Shown in every feed: never a credential of the source's URL.
        meta["source_feed"] = redact.url(source.url)
        if source_title:
            meta["source_title"] = _cut(source_title, MAX_TITLE_BYTES)
    else:
        meta["source_page"] = redact.url(source.url)
    if story:
        meta["story"] = story
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, default_flow_style=None,
                           width=10**6)
    return f"---\n{front}---\n{_html_block(item)}\n" + (
        f"\n<{_autolink(item.link)}>\n" if item.link else "")


def _html_block(item: Item) -> str:
    """The sanitised body as one CommonMark HTML block: wrapped in a <div> and
    without blank lines (which would end the block and turn the rest into
    Markdown); a blank line inside <pre> keeps its place as a space."""
    base = item.link or ""
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    body = content.sanitise(item.html, base, origin).strip()
    lines = [line if line.strip() else "&#32;" for line in body.split("\n")]
    return '<div class="upstream">\n' + "\n".join(lines) + "\n</div>"


def _autolink(url: str) -> str:
    # An autolink may hold no spaces, '<' or '>'.
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def write_new(folder: Path, name: str, text: str) -> Path | None:
    """Write a post atomically, never replacing one that exists (None then)."""
    target = folder / name
    return target if atomic.create_text(target, text) else None


def _reason(e: IndexUnavailable, config: Config | None = None) -> str:
    """The cause without the database's name, as a file write says it."""
    return health.storage_reason(e, durable.folder(config) if config is not None else None)


def retry_delay(every: int, failures: int) -> int:
    """Exponential backoff from the source's own interval, capped."""
    delay: int = every * 2 ** min(failures - 1, 16)
    return min(delay, max(every, MAX_BACKOFF))


# -- collecting -------------------------------------------------------------------
@dataclass(frozen=True)
class SourceResult:
    category: str
    url: str
    new: int = 0
    unchanged: int = 0
    updated: int = 0                # corrected in place
    kept: int = 0                   # changed upstream, but edited by hand here: kept
    fulltext: int = 0               # items stored with the article of their page
    fulltext_errors: tuple[str, ...] = ()   # pages that kept the feed's content, and why
    not_modified: bool = False
    error: str | None = None
    warning: str | None = None

    def line(self) -> str:
        where = f"{self.category} {redact.url(self.url)}"
        if self.error:
            return f"{where}: failed: {redact.text(self.error)}"
        if self.not_modified:
            return f"{where}: not modified"
        extra = f" (warning: {self.warning})" if self.warning else ""
        updated = f"{self.updated} updated, " if self.updated else ""
        kept = f", {self.kept} changed upstream but edited here (kept)" if self.kept else ""
        full = f", full text for {self.fulltext}" if self.fulltext else ""
        if self.fulltext_errors:
            full += (f", full text failed for {len(self.fulltext_errors)} (kept the feed's "
                     f"content: {self.fulltext_errors[0]}"
                     + (" …" if len(self.fulltext_errors) > 1 else "") + ")")
        return (f"{where}: {self.new} new, {updated}{self.unchanged} unchanged"
                f"{kept}{full}{extra}")


class Collector:
    """Fetches sources and stores their new items; one per process."""

    def __init__(self, config: Config, *, fetcher: Fetcher | None = None,
                 clock: Clock = utcnow, index: Index | None = None) -> None:
        self.config, self.clock, self.index = config, clock, index
        self.fetcher = fetcher or Fetcher(site_url=config.site.url,
                                          allow_private=config.allow_private_sources)
        self.fulltext_limits = FulltextLimits()
        self.gate = HostGate(PER_HOST, HOST_DELAY)
        self._fulltext: FullText | None = None
        self._stories: Stories | None = None
        self._lock = threading.Lock()       # the pass's shared parts, between fetch threads
        self._turns: dict[tuple[str, str], threading.Event] = {}
        self._order: list[tuple[str, str]] = []

    def sources(self, category: str | None = None) -> list[tuple[Category, Source]]:
        return [(cat, src) for slug, cat in self.config.categories.items()
                if category in (None, slug) for src in cat.sources]

    def due(self) -> list[tuple[Category, Source]]:
        now = self.clock()
        return [(c, s) for c, s in self.sources()
                if load_state(self.config, c.slug, s.url).due(now)]

    def run(self, todo: list[tuple[Category, Source]],
            progress: Callable[[SourceResult], None] | None = None) -> list[SourceResult]:
        if not todo:
            return []
        known = self._stored_guids()
        for cat, _src in todo:
            known.setdefault(cat.slug, set())

        # Sources store in config order when reprints are grouped (fetching stays
        # parallel): the first copy of a story is then the one of the first
        # source, whatever answered first (the stories' ties: config order).
        self._turns = {(c.slug, s.url): threading.Event() for c, s in todo}
        self._order = [(c.slug, s.url) for c, s in todo]

        def one(job: tuple[Category, Source]) -> SourceResult:
            try:
                result = self.collect(job[0], job[1], known[job[0].slug])
            finally:
                self._turns[job[0].slug, job[1].url].set()
            if progress:
                progress(result)
            return result

        try:
            # Sources in parallel, politely per host (polite.py); results in config order.
            with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(todo))),
                                    thread_name_prefix="feedsvc-fetch") as pool:
                results = list(pool.map(one, todo))
        finally:
            if self._fulltext is not None:
                self._fulltext.close()
                self._fulltext = None
            self._save_stories()
        return results

    def _wait_turn(self, cat: Category, src: Source) -> None:
        """Wait until every source before this one in the pass has stored (each
        ends within its fetch deadlines: the wait is bounded by theirs)."""
        for key in self._order:
            if key == (cat.slug, src.url):
                return
            self._turns[key].wait()

    def stories(self) -> Stories | None:
        """The near-duplicate memory, loaded once per pass (None when switched off)."""
        settings = self.config.near_duplicates
        if not settings.enabled:
            return None
        with self._lock:
            return self._load_stories()

    def _load_stories(self) -> Stories:
        settings = self.config.near_duplicates
        if self._stories is None:
            from feedsvc.upstream.stories import Stories  # datasketch: collecting only

            self._stories = Stories.load(store_for(self.config), settings.threshold)
        return self._stories

    def _story(self, guid: str, item: Item, src: Source) -> str | None:
        stories = self.stories()
        if stories is None:
            return None
        try:
            with self._lock:
                return stories.story_of(guid, item.title, item.html, src.url)
        except Exception:  # noqa: BLE001 - a near-duplicate check must never cost the item
            log.exception("near-duplicate check of %s failed; stored as its own story", guid)
            return None

    def _save_stories(self) -> None:
        if self._stories is None:
            return
        try:
            self._stories.save()
        except IndexUnavailable as e:
            # Lost, it costs only the grouping of the next reprints of these posts.
            log.error("cannot save the near-duplicate signatures: %s", e)
        self._stories = None

    def full_text(self) -> FullText:
        with self._lock:
            if self._fulltext is None:
                self._fulltext = FullText(self.fulltext_limits, site_url=self.config.site.url,
                                          allow_private=self.config.allow_private_sources,
                                          gate=self.gate)
            return self._fulltext

    def _stored_guids(self) -> dict[str, set[str]]:
        index = self.index
        if index is None:
            # `feedsvc collect`: the shared index, brought up to date (stats only
            # for what did not change).
            index = Index(self.config, self.clock)
            index.scan()
        return index.source_guids()

    def stored_by(self, cat: Category, src: Source) -> str:
        """What the last pass that stored anything stored (collect's summary)."""
        state = load_state(self.config, cat.slug, src.url)
        if not state.last_stored_at:
            return "nothing stored yet"
        shown = ", ".join(state.last_stored[:3]) + (" …" if len(state.last_stored) > 3 else "")
        return f"last stored {len(state.last_stored)} post(s) at {state.last_stored_at}: {shown}"

    def collect(self, cat: Category, src: Source, known: set[str]) -> SourceResult:
        """One source, once: never raises; the outcome is in the result and the state."""
        try:
            state = load_state(self.config, cat.slug, src.url, strict=True)
        except IndexUnavailable as e:
            # Nothing fetched, nothing stored, and the stored state left as it is.
            reason = _reason(e, self.config)
            health.STATE.failed(sources_place(self.config), reason, what="read the source state in")
            return SourceResult(cat.slug, src.url,
                                error=f"cannot read the source state: {reason}; nothing stored")
        now = self.clock()
        state.last_attempt = dates.rfc3339(now)
        try:
            result = self._fetch_and_store(cat, src, state, known)
        except Exception as e:  # noqa: BLE001 - one source must never stop the others
            if not isinstance(e, FetchError):
                log.exception("collecting %s failed unexpectedly", redact.url(src.url))
            state.failures += 1
            state.last_error = str(e)
            delay = retry_delay(src.every, state.failures)
            log.warning("source %s (%s) failed: %s; next try in %d s", redact.url(src.url), cat.slug,
                        redact.text(str(e)), delay)
            result = SourceResult(cat.slug, src.url, error=str(e))
        else:
            state.failures, state.last_error = 0, None
            state.last_success = state.last_attempt
            delay = src.every
        state.next_attempt = dates.rfc3339(now + dt.timedelta(seconds=delay))
        problem = self._save(state)
        if problem and not result.error:
            # The items are stored, but the next pass would not know it: an error,
            # for the exit code and /status (issue 15).
            result = dataclasses.replace(result, error=problem)
        return result

    def _save(self, state: SourceState) -> str | None:
        """Save a source's state; the reason if that failed (recorded in health.STATE)."""
        where = sources_place(self.config)
        try:
            save_state(self.config, state)
        except IndexUnavailable as e:
            reason = _reason(e, self.config)
            health.STATE.failed(where, reason, what="save the source state in")
            return f"cannot save the source state: {reason}"
        health.STATE.ok(where)
        return None

    def _fetch_and_store(self, cat: Category, src: Source, state: SourceState,
                         known: set[str]) -> SourceResult:
        with self.gate.turn(src.url):
            fetched = self.fetcher.get(src.url, Validators(state.etag, state.last_modified))
        if fetched.status == 304:
            return SourceResult(cat.slug, src.url, not_modified=True)
        tz = dates.zone(post_zone((cat.slug,), self.config))
        parsed = parse_source(fetched.body, fetched.content_type, fetched.url, src, tz)
        seen = set(state.seen)
        counts = {"updated": 0, "kept": 0, "unchanged": 0}
        budget = _Budget(src, self.fulltext_limits)
        todo: list[Item] = []
        for item in parsed.items:
            written = corrections.Written.load(state.written.get(item.guid))
            if written is not None:
                counts[self._correct(item, written, cat, src, parsed.title, state, budget)] += 1
                continue
            if item.guid in known or item.guid in seen:
                counts["unchanged"] += 1
                continue
            seen.add(item.guid)
            todo.append(item)
        later, todo = todo[MAX_NEW_PER_POLL:], todo[:MAX_NEW_PER_POLL]
        if todo and self.config.near_duplicates.enabled:
            self._wait_turn(cat, src)
        stored, on_disk, refused = self._store_all(todo, cat, src, parsed.title, state, budget)
        # The records of what was written count in the state's bytes too.
        trim_seen(state.seen, state.written)
        known.update(stored)
        known.update(on_disk)
        notes = [parsed.warning] if parsed.warning else []
        undated = [it for it in todo if it.date_problem and it.guid in stored]
        if undated:
            notes.append(f"{len(undated)} item(s) stored with the time they were collected: "
                         f"{undated[0].date_problem}")
        if refused:
            notes.append(f"{len(refused)} item(s) not stored: {refused[0]}")
        if later:
            notes.append(f"{len(later)} more new item(s) than the {MAX_NEW_PER_POLL} stored per "
                         "poll: left for the next poll")
        else:
            # Remember the validators only once every item is stored: a 304 later
            # must never hide an item left for later.
            state.etag = fetched.validators.etag
            state.last_modified = fetched.validators.last_modified
        warning = "; ".join(notes) or None
        state.last_warning = warning
        state.last_fulltext_errors = list(budget.errors)
        wrote = [w.file for w in stored.values()]
        if wrote:
            state.last_stored, state.last_stored_at = wrote[:50], dates.rfc3339(self.clock())
        return SourceResult(cat.slug, src.url, new=len(stored),
                            unchanged=counts["unchanged"] + len(on_disk),
                            updated=counts["updated"], kept=counts["kept"],
                            fulltext=budget.done, fulltext_errors=tuple(budget.errors),
                            warning=warning)

    def _store_all(self, todo: list[Item], cat: Category, src: Source, source_title: str,
                   state: SourceState, budget: _Budget
                   ) -> tuple[dict[str, corrections.Written], set[str], list[str]]:
        """Store the new items; return what was written (by guid), the guids
        whose post was already on disk, and why others were not stored.

        The state is saved first with the items marked seen (write-ahead): if
        it cannot be saved, nothing is stored, because a post stored but not
        remembered would come back after an admin deleted it. An item whose
        post cannot be written is unmarked again, so that it is tried next time.
        What was written (for corrections) is recorded in the state, which the
        caller saves after the pass: lost, it only means no correction later.
        """
        if not todo:
            return {}, set(), []
        state.seen.extend(it.guid for it in todo)
        trim_seen(state.seen, state.written)
        problem = self._save(state)
        if problem:
            del state.seen[-len(todo):]
            raise FetchError(f"{problem}; nothing stored")
        stored: dict[str, corrections.Written] = {}
        on_disk: set[str] = set()
        refused: list[str] = []
        try:
            for item in todo:
                outcome = self._store(item, cat, src, source_title, budget)
                if isinstance(outcome, corrections.Written):
                    stored[item.guid] = outcome
                    state.written[item.guid] = asdict(outcome)
                elif outcome is None:
                    on_disk.add(item.guid)
                else:
                    refused.append(outcome)
        finally:
            # Items not written (refused, or after a failed write) are not seen.
            missing = {it.guid for it in todo} - stored.keys() - on_disk
            if missing:
                state.seen[:] = [g for g in state.seen if g not in missing]
        return stored, on_disk, refused

    def _with_full_text(self, item: Item, budget: _Budget) -> Item:
        """The item with its page's article as its body, when the source asks
        for it and the caps allow; else as the feed gave it (the reason counted)."""
        if not budget.wanted or not item.link:
            return item
        refused = budget.refuses()
        if refused:
            budget.errors.append(f"{item.link}: {refused}")
            return item
        try:
            html_text = self.full_text().article(item.link)
        except FulltextError as e:
            log.warning("full text of %s: %s", redact.url(item.link), redact.text(str(e)))
            budget.errors.append(str(e))
            return item
        budget.done += 1
        # The article is held to the body's cap like a feed's content.
        return capped(replace(item, html=html_text))

    def _store(self, item: Item, cat: Category, src: Source, source_title: str,
               budget: _Budget) -> corrections.Written | str | None:
        """Write the item's post: what was written; None when it is already on
        disk; else why the item cannot be a post. A failed write raises FetchError."""
        tz = dates.zone(post_zone((cat.slug,), self.config))
        date = item.date or self.clock().astimezone(tz)
        day = date.astimezone(tz).date()
        name = f"{day.isoformat()}-{file_slug(item)}.md"
        folder = category_folder(self.config, cat.slug)
        if (folder / name).exists():
            return None
        full = self._with_full_text(item, budget)
        text = post_text(full, date, cat, src, source_title)
        problem = self._unreadable(folder / name, text)
        if problem:
            log.warning("not storing item %s of %s: %s", _cut(item.guid, 200),
                        redact.url(src.url), problem)
            return problem
        # The story is looked up (and remembered) only for an item that is stored.
        story = self._story(item.guid, full, src)
        if story is not None:
            text = post_text(full, date, cat, src, source_title, story=story)
        try:
            path = write_new(folder, name, text)
        except OSError as e:
            raise FetchError(f"cannot write {name}: {e.strerror or e}") from e
        if path is None:
            return None
        log.info("stored %s from %s", path, redact.url(src.url))
        return self._written(path, text, item, date)

    def _unreadable(self, path: Path, text: str) -> str | None:
        """Why the post reader would skip this post text, if it would: an item
        is never marked seen as a post that is then never served."""
        raw = text.encode("utf-8")
        rel = path.relative_to(self.config.posts_dir).as_posix()
        fake = os.stat_result((0o100644, 0, 0, 1, 0, 0, len(raw), 0, 0, 0))
        try:
            if len(raw) > MAX_POST_BYTES:
                return f"the post would be larger than {MAX_POST_BYTES // 2**20} MiB"
            parse_post(rel, raw, fake, self.config)
        except PostError as e:
            return e.reason
        return None

    def _written(self, path: Path, text: str, item: Item,
                 date: dt.datetime) -> corrections.Written:
        return corrections.Written(
            file=path.relative_to(self.config.posts_dir).as_posix(),
            sha256=corrections.text_hash(text), item=item.fingerprint(),
            date=dates.rfc3339(date),
            updated=dates.rfc3339(item.updated) if item.updated else None)

    def _correct(self, item: Item, written: corrections.Written, cat: Category, src: Source,
                 source_title: str, state: SourceState, budget: _Budget) -> str:
        """An item we stored, seen again: rewrite our post in place if upstream
        changed it and nobody here did; which count it goes to."""
        decision = corrections.decide(written, self.config.posts_dir, item.fingerprint(),
                                      item.updated)
        if decision is corrections.Decision.SAME or decision is corrections.Decision.DELETED:
            return "unchanged"
        if decision is corrections.Decision.HAND_EDITED:
            log.info("%s changed upstream, but %s was edited here: kept", item.guid, written.file)
            # Reported once per upstream change, not on every pass.
            state.written[item.guid] = asdict(replace(
                written, item=item.fingerprint(),
                updated=dates.rfc3339(item.updated) if item.updated else written.updated))
            return "kept"
        # Same file and date, so the same permalink and id; `updated:` says when.
        date = dt.datetime.fromisoformat(written.date)
        updated = max(item.updated or self.clock(), date)
        path = self.config.posts_dir / written.file
        text = post_text(self._with_full_text(item, budget), date, cat, src, source_title,
                         updated=updated, story=_story_of(path))
        problem = self._unreadable(path, text)
        if problem:
            # Our post stays as it was rather than become one the reader skips.
            log.warning("not correcting %s from %s: %s", written.file, redact.url(src.url),
                        problem)
            return "unchanged"
        try:
            atomic.replace_text(path, text)
        except OSError as e:
            raise FetchError(f"cannot update {written.file}: {e.strerror or e}") from e
        log.info("updated %s from %s (upstream correction)", path, redact.url(src.url))
        state.written[item.guid] = asdict(self._written(path, text, item, date))
        return "updated"


def trim_seen(seen: list[str], written: dict[str, dict[str, Any]] | None = None) -> None:
    """Keep the newest guids within SEEN_MAX and SEEN_MAX_BYTES, counting with
    each guid what was written for it (corrections); drop the records of the
    guids forgotten."""
    del seen[:-SEEN_MAX]
    total, keep = 0, 0
    for guid in reversed(seen):
        total += _size(guid) + 4          # with its JSON quotes, comma, new line
        record = written.get(guid) if written else None
        if record is not None:
            # Its key and record as save_state writes them: nested two deep, so
            # each line of the record is indented two more spaces.
            text = json.dumps(record, ensure_ascii=False, indent=1)
            total += _size(guid) + _size(text) + 2 * text.count("\n") + 8
        if total > SEEN_MAX_BYTES:
            break
        keep += 1
    del seen[:len(seen) - keep]
    if written is not None:
        kept = set(seen)
        for guid in [g for g in written if g not in kept]:
            del written[guid]


def _story_of(path: Path) -> str | None:
    """The story an existing post of ours is in: a correction keeps it."""
    from feedsvc.posts import split_front_matter

    try:
        front, _ = split_front_matter(path.read_text(encoding="utf-8"))
        meta = yaml.safe_load(front)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    story = meta.get("story") if isinstance(meta, dict) else None
    return str(story) if story else None


class _Budget:
    """What is left of one source's full-text caps in this pass."""

    def __init__(self, src: Source, limits: FulltextLimits) -> None:
        self.wanted, self.limits = src.fulltext, limits
        self.start = time.monotonic()
        self.done, self.tried = 0, 0
        self.errors: list[str] = []

    def refuses(self) -> str | None:
        if self.tried >= self.limits.pages:
            return f"over the cap of {self.limits.pages} article pages per pass"
        if time.monotonic() - self.start > self.limits.pass_seconds:
            return f"over the {self.limits.pass_seconds:g} s for article pages in this pass"
        self.tried += 1
        return None


def _hand_leader(config: Config) -> Leader | PgLeader:
    """The lock `feedsvc serve` polls under: the cluster's with a PostgreSQL
    index (held by `collect` while it runs, so no server polls meanwhile), else
    the machine's file lock."""
    if config.index.type == "postgres" and config.index.url:
        from feedsvc.index.pg import PgLeader

        return PgLeader(config.index.url)
    return Leader(config.state_dir / "leader.lock")


def run_collect(config: Config, category: str | None) -> int:
    """`feedsvc collect`: one pass over every source; 0 all answered, 1 some failed."""
    if category is not None and category not in config.categories:
        print(f"feedsvc: no category {category!r} in {config.path}", file=sys.stderr)
        return 2
    collector = Collector(config)
    todo = collector.sources(category)
    if not todo:
        print("no upstream sources configured" + (f" for {category}" if category else ""))
        return 0
    # The summary below says what each stored post would log.
    log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    leader_log = logging.getLogger("feedsvc.leader")
    leader_log.setLevel(max(leader_log.getEffectiveLevel(), logging.WARNING))
    leader = _hand_leader(config)
    server = not leader.acquire()
    if server:
        # The running server polls these sources too: what it fetched since the
        # upstream last changed answers "not modified" here.
        if isinstance(leader, Leader):
            who = f"pid {leader.leader_pid() or '?'}"
            lock = str(config.state_dir / "leader.lock")
        else:
            # The cluster's leader may be on another machine: its state is the
            # index's, so what it stored is listed here all the same.
            who = leader.holder() or "another instance of the cluster"
            lock = "the cluster's PostgreSQL advisory lock"
        print(f"note: feedsvc serve ({who}) is collecting these sources too ({lock}); "
              "what it stored is listed per source")
    try:
        with tqdm(total=len(todo), unit="source", disable=not sys.stderr.isatty(),
                  file=sys.stderr, leave=False) as bar, logging_redirect_tqdm():
            results = collector.run(todo, lambda r: bar.update(1))
    finally:
        leader.release()
    jobs = dict(((c.slug, s.url), (c, s)) for c, s in todo)
    for r in results:
        extra = ""
        if r.error is None and not r.new and not r.updated:
            extra = f" ({'the server ' if server else ''}{collector.stored_by(*jobs[r.category, r.url])})"
        print(r.line() + extra)
    failed = sum(1 for r in results if r.error)
    print(f"{len(results)} source(s): {len(results) - failed} answered, {failed} failed, "
          f"{sum(r.new for r in results)} new post(s)")
    return 1 if failed else 0
