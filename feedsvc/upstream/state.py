"""Each upstream source's state (validators, failures, what was stored),
kept in the index (index/sources.py). Apart from collector.py so that
/status can show it without loading the collector's libraries (feedparser,
tqdm, the fetcher) into every serving worker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from feedsvc import redact
from feedsvc.config import Config
from feedsvc.index import IndexUnavailable, durable
from feedsvc.index.sources import store_for

log = logging.getLogger("feedsvc.upstream.collector")   # where these messages always went


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
    last_fulltext_errors: list[str] = field(default_factory=list)
    last_stored: list[str] = field(default_factory=list)    # posts the last storing pass wrote
    last_stored_at: str | None = None
    failures: int = 0
    next_attempt: str | None = None
    seen: list[str] = field(default_factory=list)
    # guid → what we wrote for it (corrections.Written as a dict)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)

    def due(self, now: dt.datetime) -> bool:
        return self.next_attempt is None or dt.datetime.fromisoformat(self.next_attempt) <= now

    def public(self) -> dict[str, Any]:
        """What /status shows to the admin: not the remembered guids, and no
        credential of the URL (nor of one quoted in an error)."""
        data = asdict(self)
        data.pop("seen")
        data.pop("written")
        data["url"] = redact.url(self.url)
        for key in ("last_error", "last_warning"):
            if data[key]:
                data[key] = redact.text(data[key])
        data["last_fulltext_errors"] = [redact.text(e) for e in self.last_fulltext_errors]
        return data


# States this process could not save (the index unwritable: a full or
# read-only state_dir, PostgreSQL away): newer than what is stored, so they
# are what counts here until a save works — otherwise a source would look due
# at every tick and be fetched every second.
_UNSAVED: dict[tuple[str, str, str], SourceState] = {}
_UNSAVED_LOCK = threading.Lock()
_READ_FAILING: set[str] = set()     # why the state could not be read, while it cannot


def _unsaved_key(config: Config, slug: str, url: str) -> tuple[str, str, str]:
    return (durable.location(config), slug, url)


def load_state(config: Config, slug: str, url: str, *, strict: bool = False) -> SourceState:
    """A source's state, from the index (index/sources.py). `strict`: raise
    IndexUnavailable when it cannot be read (collecting from an empty state
    would bring back a post an admin deleted), else a fresh state."""
    with _UNSAVED_LOCK:
        unsaved = _UNSAVED.get(_unsaved_key(config, slug, url))
    if unsaved is not None:
        return dataclasses.replace(unsaved, seen=list(unsaved.seen), written=dict(unsaved.written))
    try:
        data = store_for(config).source(slug, url)
    except IndexUnavailable as e:
        # Asked every tick while it lasts: logged once when it starts (and once
        # when it ends), as health.py does for writes.
        with _UNSAVED_LOCK:
            new = not _READ_FAILING
            _READ_FAILING.add(str(e))
        if new:
            log.error("cannot read the upstream state: %s (retrying; logged again when it "
                      "works)", redact.text(str(e)))
        if strict:
            raise
        return SourceState(slug, url)
    with _UNSAVED_LOCK:
        was = bool(_READ_FAILING)
        _READ_FAILING.clear()
    if was:
        log.warning("the upstream state is readable again")
    if data is None:
        return SourceState(slug, url)
    try:
        names = {f.name for f in dataclasses.fields(SourceState)}
        return SourceState(**{k: v for k, v in data.items() if k in names})
    except TypeError as e:
        log.warning("ignoring unreadable source state of %s: %s", redact.url(url), e)
        return SourceState(slug, url)


def save_state(config: Config, state: SourceState) -> None:
    """Store the state in the index (IndexUnavailable if that fails; `load_state`
    then still returns it in this process)."""
    key = _unsaved_key(config, state.category, state.url)
    try:
        store_for(config).save_source(state.category, state.url, asdict(state))
    except IndexUnavailable:
        with _UNSAVED_LOCK:
            _UNSAVED[key] = dataclasses.replace(state, seen=list(state.seen),
                                                written=dict(state.written))
        raise
    with _UNSAVED_LOCK:
        _UNSAVED.pop(key, None)


def source_status(config: Config) -> list[dict[str, Any]]:
    """Per source: last error, next attempt, validators — for /status."""
    return [load_state(config, slug, src.url).public()
            for slug, cat in config.categories.items() for src in cat.sources]
