"""Upstream corrections: when an item we stored comes back edited (a newer
`updated`, or other text under the same id), our post is rewritten in place —
unless someone edited or deleted the file since we wrote it.

What we wrote is remembered per item as a hash of the file's text (not its
mtime: a copy, a checkout or `touch` moves an mtime without an edit), with a
fingerprint of the item as upstream sent it. A file whose hash differs was
edited by hand and is never overwritten; a missing file was deleted by hand
and is never re-created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from feedsvc import dates


class Decision(Enum):
    SAME = "same"                   # upstream sent what we stored
    UPDATE = "update"               # upstream changed it and our file is as we wrote it
    HAND_EDITED = "hand-edited"     # upstream changed it, but so did someone here: kept
    DELETED = "deleted"             # the file is gone: never re-created


@dataclass(frozen=True)
class Written:
    """What we stored for one upstream item."""
    file: str                       # path below posts_dir
    sha256: str                     # of the text we wrote
    item: str                       # fingerprint of the item as upstream sent it
    date: str                       # the post's date as we wrote it, RFC 3339
    updated: str | None = None      # the item's own `updated`, RFC 3339

    @classmethod
    def load(cls, data: Any) -> Written | None:
        try:
            return cls(**data)
        except TypeError:
            return None


def text_hash(text: str) -> str:
    """The hash of a post's text as atomic.py writes it (UTF-8 bytes)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(title: str, html: str, link: str | None, tags: tuple[str, ...],
                date: dt.datetime | None) -> str:
    """What makes an upstream item "the same text": its title, body, link, tags and date."""
    when = dates.rfc3339(date) if date else None
    return text_hash(json.dumps([title, html, link, list(tags), when], ensure_ascii=False))


def decide(written: Written, posts_dir: Path, item: str, updated: dt.datetime | None) -> Decision:
    newer = updated is not None and (
        written.updated is None or updated > dt.datetime.fromisoformat(written.updated))
    if item == written.item and not newer:
        return Decision.SAME
    try:
        current = (posts_dir / written.file).read_bytes()
    except FileNotFoundError:
        return Decision.DELETED
    if hashlib.sha256(current).hexdigest() != written.sha256:
        return Decision.HAND_EDITED
    return Decision.UPDATE
