"""Upstream sources → post files: parse RSS/Atom (feedparser) and JSON Feed
(by hand: feedparser reads it as zero entries), store each new item as a
Jekyll post in the shipped format, and remember per source what the next
conditional GET needs and how the last attempt went.

Collection only ever adds files: a stored post is never overwritten or
deleted, so an admin's edit survives, and an upstream that drops old items
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
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
from feedsvc.index import Index
from feedsvc.posts import MAX_POST_BYTES, parse_post, post_zone
from feedsvc.upstream.fetch import Fetcher, Validators

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
    date_problem: str | None = None   # a date was given but is unusable (stored as collected)


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
    return Parsed([capped(it) for it in items if it is not None])


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
    return Parsed([capped(it) for it in items if it is not None], warning)


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
                tags=_tags(tags), date_problem=problem)


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
    meta["date"] = dates.jekyll(date)
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
        """What /status shows to the admin: not the remembered guids, and no
        credential of the URL (nor of one quoted in an error)."""
        data = asdict(self)
        data.pop("seen")
        data["url"] = redact.url(self.url)
        for key in ("last_error", "last_warning"):
            if data[key]:
                data[key] = redact.text(data[key])
        return data


def state_path(config: Config, slug: str, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return config.state_dir / "sources" / f"{slug}-{digest}.json"


# States this process could not save (a full or read-only state_dir): newer
# than what is on disk, so they are what counts here until a save works —
# otherwise a source would look due at every tick and be fetched every second.
_UNSAVED: dict[Path, SourceState] = {}
_UNSAVED_LOCK = threading.Lock()


def load_state(config: Config, slug: str, url: str) -> SourceState:
    path = state_path(config, slug, url)
    with _UNSAVED_LOCK:
        unsaved = _UNSAVED.get(path)
    if unsaved is not None:
        return dataclasses.replace(unsaved, seen=list(unsaved.seen))
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
    """Write the state (OSError if that fails; `load_state` then still returns it)."""
    path = state_path(config, state.category, state.url)
    try:
        atomic.replace_text(path, json.dumps({"format": STATE_FORMAT, **asdict(state)},
                                             ensure_ascii=False, indent=1))
    except OSError:
        with _UNSAVED_LOCK:
            _UNSAVED[path] = dataclasses.replace(state, seen=list(state.seen))
        raise
    with _UNSAVED_LOCK:
        _UNSAVED.pop(path, None)


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
        where = f"{self.category} {redact.url(self.url)}"
        if self.error:
            return f"{where}: failed: {redact.text(self.error)}"
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
        path = state_path(self.config, state.category, state.url)
        try:
            save_state(self.config, state)
        except OSError as e:
            health.STATE.failed(path, health.reason(e), what="save the source state")
            return f"cannot save the source state: {health.reason(e)}"
        health.STATE.ok(path)
        return None

    def _fetch_and_store(self, cat: Category, src: Source, state: SourceState,
                         known: set[str]) -> SourceResult:
        fetched = self.fetcher.get(src.url, Validators(state.etag, state.last_modified))
        if fetched.status == 304:
            return SourceResult(cat.slug, src.url, not_modified=True)
        tz = dates.zone(post_zone((cat.slug,), self.config))
        parsed = parse_feed(fetched.body, fetched.content_type, fetched.url, tz)
        seen = set(state.seen)
        todo: list[Item] = []
        for item in parsed.items:
            if item.guid not in known and item.guid not in seen:
                seen.add(item.guid)
                todo.append(item)
        later, todo = todo[MAX_NEW_PER_POLL:], todo[:MAX_NEW_PER_POLL]
        written, refused = self._store_all(todo, cat, src, state)
        known.update(written)
        notes = [parsed.warning] if parsed.warning else []
        undated = [it for it in todo if it.date_problem and it.guid in written]
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
        return SourceResult(cat.slug, src.url, new=len(written),
                            unchanged=len(parsed.items) - len(todo) - len(later),
                            warning=warning)

    def _store_all(self, todo: list[Item], cat: Category, src: Source,
                   state: SourceState) -> tuple[set[str], list[str]]:
        """Store the new items; return the guids stored and why others were not.

        The state is saved first with the items marked seen (write-ahead): if
        it cannot be saved, nothing is stored, because a post stored but not
        remembered would come back after an admin deleted it. An item whose
        post cannot be written is unmarked again, so that it is tried next time.
        """
        if not todo:
            return set(), []
        state.seen.extend(it.guid for it in todo)
        trim_seen(state.seen)
        problem = self._save(state)
        if problem:
            del state.seen[-len(todo):]
            raise FetchError(f"{problem}; nothing stored")
        written: set[str] = set()
        refused: list[str] = []
        try:
            for item in todo:
                reason = self._store(item, cat, src)
                if reason is None:
                    written.add(item.guid)
                else:
                    refused.append(reason)
        finally:
            # Items not written (refused, or after a failed write) are not seen.
            missing = {it.guid for it in todo} - written
            if missing:
                state.seen[:] = [g for g in state.seen if g not in missing]
        return written, refused

    def _store(self, item: Item, cat: Category, src: Source) -> str | None:
        """Write the item's post: None when it is on disk (now or already), else
        why the item cannot be a post. A failed write raises FetchError."""
        tz = dates.zone(post_zone((cat.slug,), self.config))
        date = item.date or self.clock().astimezone(tz)
        day = date.astimezone(tz).date()
        name = f"{day.isoformat()}-{file_slug(item)}.md"
        folder = category_folder(self.config, cat.slug)
        text = post_text(item, date, cat, src)
        problem = self._unreadable(folder / name, text)
        if problem:
            log.warning("not storing item %s of %s: %s", _cut(item.guid, 200),
                        redact.url(src.url), problem)
            return problem
        try:
            path = write_new(folder, name, text)
        except OSError as e:
            raise FetchError(f"cannot write {name}: {e.strerror or e}") from e
        if path:
            log.info("stored %s from %s", path, redact.url(src.url))
        return None

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


def trim_seen(seen: list[str]) -> None:
    """Keep the newest guids within SEEN_MAX and SEEN_MAX_BYTES."""
    del seen[:-SEEN_MAX]
    total, keep = 0, 0
    for guid in reversed(seen):
        total += _size(guid) + 4          # with its JSON quotes, comma, new line
        if total > SEEN_MAX_BYTES:
            break
        keep += 1
    del seen[:len(seen) - keep]


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
