"""Upstream sources → post files: parse RSS/Atom (feedparser) and JSON Feed
(by hand: feedparser reads it as zero entries), store each new item as a
Jekyll post in the shipped format, and remember per source what the next
conditional GET needs and how the last attempt went.

Collection only ever adds files: a stored post is never overwritten or
deleted, so an admin's edit survives, and an upstream that drops old items
leaves our feeds as they were.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import html
import json
import logging
import re
import sys
import time
import xml.sax
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import feedparser
import yaml
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from feedsvc import atomic, content, dates
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Category, Config, Source
from feedsvc.errors import FetchError
from feedsvc.index import Index
from feedsvc.posts import post_zone
from feedsvc.upstream.fetch import Fetcher, Validators

log = logging.getLogger(__name__)
SEEN_MAX = 10_000              # guids remembered per source
MAX_BACKOFF = 6 * 3600         # a failing source is still tried at least this often
STATE_FORMAT = 1


# -- parsing --------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    guid: str
    link: str | None
    title: str
    html: str
    date: dt.datetime | None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parsed:
    items: list[Item]
    warning: str | None = None      # read, but something was wrong with the document


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
    return Parsed([it for it in items if it is not None])


def _json_item(it: dict[str, Any], base: str, tz: ZoneInfo) -> Item | None:
    link = _http_url(base, it.get("url") or it.get("external_url"))
    guid = _text(it.get("id")) or link
    if not guid:
        return None
    body = it.get("content_html") or _plain_html(it.get("content_text")) or \
        html.escape(_text(it.get("summary")))
    raw = it.get("date_published") or it.get("date_modified")
    tags = it.get("tags")
    return Item(guid=guid, link=link, title=_text(it.get("title")), html=str(body),
                date=_date(raw, None, tz),
                tags=_tags(tags if isinstance(tags, list) else []))


def _xml_feed(body: bytes, content_type: str, url: str, tz: ZoneInfo) -> Parsed:
    d = feedparser.parse(body, response_headers={"content-location": url,
                                                 "content-type": content_type or "text/xml"})
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
        log.warning("%s: %s", url, warning)
    items = [_xml_item(e, url, tz) for e in d.entries]
    return Parsed([it for it in items if it is not None], warning)


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
    return Item(guid=guid, link=link, title=title, html=_xml_body(e), date=_date(raw, parsed, tz),
                tags=_tags(tags))


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


def _date(raw: Any, parsed: time.struct_time | None, tz: ZoneInfo) -> dt.datetime | None:
    """The item's date with its own offset; the category's zone when it has none."""
    if isinstance(raw, str) and raw.strip():
        try:
            return dates.parse_string(raw, tz)
        except dates.DateError:
            pass
    if parsed is not None:
        # e.g. RFC 822 "EST", which feedparser knows as -0500 and we refuse to guess.
        return dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.UTC)
    return None


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


def post_text(item: Item, date: dt.datetime, cat: Category, source: Source) -> str:
    meta: dict[str, Any] = {"layout": "post"}
    # No title upstream: the start of the text says more than a hash would.
    meta["title"] = item.title or content.cut(content.text_of(item.html)[0], 60)
    if not meta["title"]:
        del meta["title"]
    meta["date"] = date.strftime("%Y-%m-%d %H:%M:%S %z")
    meta["categories"] = cat.slug
    # The sample post carries its category's title as a tag; source and item tags follow.
    meta["tags"] = list(dict.fromkeys((cat.title, *source.tags, *item.tags)))
    meta["source_guid"] = item.guid
    if item.link:
        meta["source_url"] = item.link
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


# -- per-source state -------------------------------------------------------------
@dataclass
class SourceState:
    category: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_warning: str | None = None
    failures: int = 0
    next_attempt: str | None = None
    seen: list[str] = field(default_factory=list)

    def due(self, now: dt.datetime) -> bool:
        return self.next_attempt is None or dt.datetime.fromisoformat(self.next_attempt) <= now

    def public(self) -> dict[str, Any]:
        """What /status shows (not the remembered guids)."""
        data = asdict(self)
        data.pop("seen")
        return data


def state_path(config: Config, slug: str, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return config.state_dir / "sources" / f"{slug}-{digest}.json"


def load_state(config: Config, slug: str, url: str) -> SourceState:
    path = state_path(config, slug, url)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = SourceState(**{k: v for k, v in data.items() if k != "format"})
    except FileNotFoundError:
        return SourceState(slug, url)
    except (OSError, ValueError, TypeError) as e:
        log.warning("ignoring unreadable source state %s: %s", path, e)
        return SourceState(slug, url)
    return state


def save_state(config: Config, state: SourceState) -> None:
    path = state_path(config, state.category, state.url)
    atomic.replace_text(path, json.dumps({"format": STATE_FORMAT, **asdict(state)},
                                         ensure_ascii=False, indent=1))


def source_status(config: Config) -> list[dict[str, Any]]:
    """Per source: last error, next attempt, validators — for /status."""
    return [load_state(config, slug, src.url).public()
            for slug, cat in config.categories.items() for src in cat.sources]


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
    not_modified: bool = False
    error: str | None = None
    warning: str | None = None

    def line(self) -> str:
        where = f"{self.category} {self.url}"
        if self.error:
            return f"{where}: failed: {self.error}"
        if self.not_modified:
            return f"{where}: not modified"
        extra = f" (warning: {self.warning})" if self.warning else ""
        return f"{where}: {self.new} new, {self.unchanged} unchanged{extra}"


class Collector:
    """Fetches sources and stores their new items; one per process."""

    def __init__(self, config: Config, *, fetcher: Fetcher | None = None,
                 clock: Clock = utcnow, index: Index | None = None) -> None:
        self.config, self.clock, self.index = config, clock, index
        self.fetcher = fetcher or Fetcher(site_url=config.site.url,
                                          allow_private=config.allow_private_sources)

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
        results = []
        for cat, src in todo:
            result = self.collect(cat, src, known.setdefault(cat.slug, set()))
            results.append(result)
            if progress:
                progress(result)
        return results

    def _stored_guids(self) -> dict[str, set[str]]:
        index = self.index
        if index is None:
            # `feedsvc collect`: the shared index, brought up to date (stats only
            # for what did not change).
            index = Index(self.config, self.clock)
            index.scan()
        return index.source_guids()

    def collect(self, cat: Category, src: Source, known: set[str]) -> SourceResult:
        """One source, once: never raises; the outcome is in the result and the state."""
        state = load_state(self.config, cat.slug, src.url)
        now = self.clock()
        state.last_attempt = dates.rfc3339(now)
        try:
            result = self._fetch_and_store(cat, src, state, known)
        except Exception as e:  # noqa: BLE001 - one source must never stop the others
            if not isinstance(e, FetchError):
                log.exception("collecting %s failed unexpectedly", src.url)
            state.failures += 1
            state.last_error = str(e)
            delay = retry_delay(src.every, state.failures)
            log.warning("source %s (%s) failed: %s; next try in %d s", src.url, cat.slug, e, delay)
            result = SourceResult(cat.slug, src.url, error=str(e))
        else:
            state.failures, state.last_error = 0, None
            state.last_success = state.last_attempt
            delay = src.every
        state.next_attempt = dates.rfc3339(now + dt.timedelta(seconds=delay))
        try:
            save_state(self.config, state)
        except OSError as e:
            log.error("cannot save the state of %s: %s", src.url, e)
        return result

    def _fetch_and_store(self, cat: Category, src: Source, state: SourceState,
                         known: set[str]) -> SourceResult:
        fetched = self.fetcher.get(src.url, Validators(state.etag, state.last_modified))
        if fetched.status == 304:
            return SourceResult(cat.slug, src.url, not_modified=True)
        tz = dates.zone(post_zone((cat.slug,), self.config))
        parsed = parse_feed(fetched.body, fetched.content_type, fetched.url, tz)
        state.last_warning = parsed.warning
        seen = set(state.seen)
        new = unchanged = 0
        for item in parsed.items:
            if item.guid in known or item.guid in seen:
                unchanged += 1
                continue
            if self._store(item, cat, src):
                new += 1
            else:
                unchanged += 1
            known.add(item.guid)
            seen.add(item.guid)
            state.seen.append(item.guid)
        del state.seen[:-SEEN_MAX]
        # Remember the validators only once every item is stored: a 304 later
        # must never hide an item that a failed write left behind.
        state.etag, state.last_modified = fetched.validators.etag, fetched.validators.last_modified
        return SourceResult(cat.slug, src.url, new=new, unchanged=unchanged,
                            warning=parsed.warning)

    def _store(self, item: Item, cat: Category, src: Source) -> bool:
        tz = dates.zone(post_zone((cat.slug,), self.config))
        date = item.date or self.clock().astimezone(tz)
        day = date.astimezone(tz).date()
        name = f"{day.isoformat()}-{file_slug(item)}.md"
        try:
            path = write_new(category_folder(self.config, cat.slug), name,
                             post_text(item, date, cat, src))
        except OSError as e:
            raise FetchError(f"cannot write {name}: {e.strerror or e}") from e
        if path:
            log.info("stored %s from %s", path, src.url)
        return path is not None


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
    with tqdm(total=len(todo), unit="source", disable=not sys.stderr.isatty(),
              file=sys.stderr, leave=False) as bar, logging_redirect_tqdm():
        results = collector.run(todo, lambda r: bar.update(1))
    for r in results:
        print(r.line())
    failed = sum(1 for r in results if r.error)
    print(f"{len(results)} source(s): {len(results) - failed} answered, {failed} failed, "
          f"{sum(r.new for r in results)} new post(s)")
    return 1 if failed else 0
