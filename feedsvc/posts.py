"""One post file → one Post record, with Jekyll's rules.

Front-matter fields are read through one table (FIELDS) of small parsers, as
Pelican's METADATA_PROCESSORS do. The body is read with the front matter,
rendered once by the index and kept there with the record (content.py,
index/), so that a feed never reads a post file again.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from feedsvc import dates, yamlsafe
from feedsvc.config import Config
from feedsvc.errors import PostError, YamlError
from feedsvc.xmlchars import strip_illegal

POST_EXTENSIONS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
# Jekyll allows trailing blanks on both lines.
FRONT_MATTER_START = re.compile(r"---[ \t]*\n")
FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
FILENAME_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")
MAX_FRONT_MATTER = 64 * 1024
MAX_POST_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Post:
    rel: str                      # path below posts_dir, '/'-separated: the post's identity
    path: str                     # absolute path, for reading the body again
    mtime_ns: int
    size: int
    kind: str                     # "markdown" or "html"
    title: str
    date: dt.datetime
    updated: dt.datetime
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    slug: str
    url: str                      # absolute permalink
    guid: str
    published: bool = True
    excerpt: str | None = None
    source_guid: str | None = None
    source_url: str | None = None

    @property
    def modified(self) -> dt.datetime:
        """The post's last change: `updated`, or the file's mtime when later."""
        mtime = dt.datetime.fromtimestamp(self.mtime_ns // 1_000_000_000, dt.UTC)
        return max(self.updated, mtime)


def post_kind(name: str) -> str | None:
    """'markdown', 'html', or None for files that are not posts (images, .DS_Store)."""
    if name.startswith("."):
        return None
    return POST_EXTENSIONS.get(os.path.splitext(name)[1].lower())


def decode(raw: bytes) -> str:
    """Strict UTF-8 (a BOM is dropped); the error names the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PostError("", f"not valid UTF-8 (byte {e.start}); save the file as UTF-8") from e


def split_front_matter(text: str) -> tuple[str, str]:
    """Return (front matter, body) of a decoded post."""
    text = text.replace("\r\n", "\n")
    start = FRONT_MATTER_START.match(text)
    if not start:
        raise PostError("", "no front matter (the file must start with a '---' line)")
    m = FRONT_MATTER_END.search(text, start.end())
    if not m:
        raise PostError("", "front matter is not closed by a '---' line")
    if m.start() - start.end() > MAX_FRONT_MATTER:
        raise PostError("", f"front matter is larger than {MAX_FRONT_MATTER // 1024} KiB")
    return text[start.end():m.start()], text[m.end() + 1:]


def _str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float | dt.date):
        raise ValueError(f"must be text, not {type(value).__name__}")
    # Front-matter text loses XML-illegal characters here, so that no id, title
    # or term can make a feed unwritable.
    return strip_illegal(str(value)).strip()


def _words(value: Any) -> tuple[str, ...]:
    """A list, or a space-separated string, as Jekyll reads categories and tags."""
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [items]
    return tuple(_str(v) for v in items if v is not None and _str(v))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ValueError(f"must be true or false, not {value!r}")


def _keep(value: Any) -> Any:
    return value


# front-matter key → (field it fills, parser). Later keys never override earlier ones.
FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "title": ("title", _str),
    "date": ("date", _keep),
    "updated": ("updated", _keep),
    "last_modified_at": ("updated", _keep),
    "categories": ("categories", _words),
    "category": ("categories", _words),
    "tags": ("tags", _words),
    "tag": ("tags", _words),
    "published": ("published", _bool),
    "slug": ("slug", _str),
    "permalink": ("permalink", _str),
    "guid": ("guid", _str),
    "excerpt": ("excerpt", _str),
    "description": ("excerpt", _str),
    "source_guid": ("source_guid", _str),
    "source_url": ("source_url", _str),
}


def read_fields(meta: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, (name, parse) in FIELDS.items():
        if key in meta and meta[key] is not None and name not in fields:
            try:
                fields[name] = parse(meta[key])
            except ValueError as e:
                raise PostError("", f"front matter '{key}': {e}") from e
    return fields


def folder_categories(rel: str) -> tuple[str, ...]:
    """Folders before the `_posts` folder are categories: a/b/_posts/x.md → (a, b)."""
    parts = rel.split("/")[:-1]
    if "_posts" not in parts:
        return ()
    return tuple(p for p in parts[: parts.index("_posts")] if p)


def post_zone(categories: tuple[str, ...], config: Config) -> str:
    for slug in categories:
        cat = config.categories.get(slug)
        if cat and cat.timezone:
            return cat.timezone
    return config.site.timezone


def title_from_slug(slug: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in re.split(r"[-_\s]+", slug) if w) or slug


def permalink(pattern: str, *, categories: tuple[str, ...], local: dt.datetime, slug: str) -> str:
    cats = []
    for c in categories:
        c = c.lower()
        if c not in cats:
            cats.append(c)
    values = {
        "categories": "/".join(cats),
        "year": f"{local.year:04d}", "month": f"{local.month:02d}", "day": f"{local.day:02d}",
        "i_month": str(local.month), "i_day": str(local.day), "short_year": f"{local.year % 100:02d}",
        "hour": f"{local.hour:02d}", "minute": f"{local.minute:02d}", "second": f"{local.second:02d}",
        "title": slug, "slug": slug,
    }
    path = re.sub(r":(i_month|i_day|short_year|categories|year|month|day|hour|minute|second"
                  r"|title|slug)", lambda m: values[m.group(1)], pattern)
    return re.sub(r"/{2,}", "/", path)


def absolute(base: str, path: str) -> str:
    if re.match(r"^https?://", path):
        return path
    quoted = quote(path if path.startswith("/") else "/" + path, safe="/:@!$&'()*+,;=-._~%")
    if "/." in quoted:
        # Dot segments go (RFC 3986 5.2.4): readers would resolve them differently.
        # site.url may have a path of its own (/blog), so join by hand after that.
        quoted = urlsplit(urljoin("http://h/", quoted)).path
    return base + quoted


def parse_post(rel: str, raw: bytes, stat: os.stat_result, config: Config) -> Post:
    """Build a Post from a file's bytes; raise PostError (path filled in) if unusable."""
    return parse_post_text(rel, raw, stat, config)[0]


def parse_post_text(rel: str, raw: bytes, stat: os.stat_result,
                    config: Config) -> tuple[Post, str]:
    """A Post and its body (the text after the front matter), from one reading
    of the file: the body the index keeps is the one its record was made from.
    The whole file is decoded, so a bad byte in the body is reported now."""
    try:
        return _parse(rel, raw, stat, config)
    except PostError as e:
        raise PostError(rel, e.reason) from e
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # A value no rule above foresaw must still cost one post, not the scan.
        raise PostError(rel, f"cannot read post: {type(e).__name__}: {e}") from e


def _parse(rel: str, raw: bytes, stat: os.stat_result, config: Config) -> tuple[Post, str]:
    name = rel.rsplit("/", 1)[-1]
    kind = post_kind(name)
    if kind is None:
        raise PostError(rel, "not a post file")
    front, body = split_front_matter(decode(raw))
    try:
        meta = yamlsafe.load(front, max_bytes=MAX_FRONT_MATTER) if front.strip() else {}
    except YamlError as e:
        line = f" (line {e.line + 1})" if e.line else ""
        raise PostError(rel, f"front matter: {e.reason}{line}") from e
    if not isinstance(meta, dict):
        raise PostError(rel, "front matter must be a mapping of keys to values")
    f = read_fields({str(k): v for k, v in meta.items()})
    categories = _merge(folder_categories(rel), f.get("categories", ()))
    tz = dates.zone(post_zone(categories, config))
    try:
        date = dates.normalise(f["date"], tz) if "date" in f else dates.from_filename(name, tz)
        updated = dates.normalise(f["updated"], tz) if "updated" in f else date
    except dates.DateError as e:
        raise PostError(rel, str(e)) from e
    if date is None:
        raise PostError(rel, "no date: give 'date:' or a YYYY-MM-DD- file name")
    assert updated is not None
    stem = os.path.splitext(name)[0]
    slug = f.get("slug") or FILENAME_PREFIX.sub("", stem) or stem
    path = f.get("permalink") or permalink(
        config.permalink, categories=categories, local=date.astimezone(tz), slug=slug)
    url = absolute(config.site.url, path)
    return Post(
        rel=rel, path=str(config.posts_dir / rel), mtime_ns=stat.st_mtime_ns, size=stat.st_size,
        kind=kind, title=f.get("title") or title_from_slug(slug),
        date=date, updated=max(updated, date), categories=categories,
        tags=_merge((), f.get("tags", ())), slug=slug, url=url, guid=f.get("guid") or url,
        published=f.get("published", True), excerpt=f.get("excerpt"),
        source_guid=f.get("source_guid"), source_url=f.get("source_url"),
    ), body


def _merge(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for item in (*first, *second):
        if item not in out:
            out.append(item)
    return tuple(out)


def read_post(posts_dir: Path, rel: str, config: Config) -> Post:
    return read_post_text(posts_dir, rel, config)[0]


def read_post_text(posts_dir: Path, rel: str, config: Config) -> tuple[Post, str]:
    """The post at `rel` and its body, from one open() of the file."""
    path = posts_dir / rel
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            raw = fh.read(MAX_POST_BYTES + 1)
    except OSError as e:
        raise PostError(rel, f"cannot read: {e.strerror or e}") from e
    if len(raw) > MAX_POST_BYTES:
        raise PostError(rel, f"file is larger than {MAX_POST_BYTES // 2**20} MiB")
    return parse_post_text(rel, raw, stat, config)


def read_body(path: str) -> str:
    """A post's body, read from disk (tests and tools; the index keeps its own copy)."""
    with open(path, "rb") as fh:
        return split_front_matter(decode(fh.read(MAX_POST_BYTES + 1)))[1]
