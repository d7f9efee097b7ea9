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

from feedsvc import dates, jekyll, yamlsafe
from feedsvc.config import Config
from feedsvc.errors import PostError, YamlError
from feedsvc.xmlchars import strip_illegal

HTML_EXTENSIONS = frozenset({"html", "htm"})
# Jekyll allows trailing blanks on both lines.
FRONT_MATTER_START = re.compile(r"---[ \t]*\n")
FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
FILENAME_PREFIX = re.compile(r"^\d{2,4}-\d{1,2}-\d{1,2}-")   # Jekyll takes 2017-2-5-, 22-3-5- too
MAX_FRONT_MATTER = 64 * 1024
MAX_POST_BYTES = 8 * 1024 * 1024
# Categories (and tags) per post: each is a feed of its own and a line of every
# entry, and 3,000 of them made one post a 1 MiB index page (issue 15).
MAX_TERMS = 100


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
    source_feed: str | None = None    # the upstream feed (or page) it was collected from
    source_title: str | None = None   # that feed's title
    source_page: str | None = None    # the web page it was collected from (a page source)
    story: str | None = None          # near-duplicates share one: the guid of the first copy
    author: tuple[str, str | None, str | None] | None = None   # name (or authors.yml key), email, uri
    image: str | None = None      # front-matter image, absolute
    category: str | None = None   # a singular `category:` (jekyll-feed shows only it)
    excerpt_only: bool = False    # front-matter `feed: {excerpt_only: …}` (jekyll-feed's)

    @property
    def modified(self) -> dt.datetime:
        """The post's last change: `updated`, or the file's mtime when later."""
        mtime = dt.datetime.fromtimestamp(self.mtime_ns // 1_000_000_000, dt.UTC)
        return max(self.updated, mtime)


def post_kind(name: str, markdown_ext: frozenset[str] = jekyll.MARKDOWN_EXT) -> str | None:
    """'markdown', 'html', or None for files that are not posts (images, .DS_Store).
    Markdown extensions are Jekyll's `markdown_ext` (lower case, without the dot)."""
    if name.startswith("."):
        return None
    ext = os.path.splitext(name)[1][1:].lower()
    return "markdown" if ext in markdown_ext else "html" if ext in HTML_EXTENSIONS else None


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
    """A list, or a space-separated string, as Jekyll reads `categories` and `tags`."""
    return _items(value.split() if isinstance(value, str) else value)


def _items(value: Any) -> tuple[str, ...]:
    """A list, or one value as it is, as Jekyll reads a singular `category` or `tag`."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_TERMS:
        raise ValueError(f"{len(items)} values; at most {MAX_TERMS}")
    return tuple(_str(v) for v in items if v is not None and _str(v))


def _author(value: Any) -> tuple[str, str | None, str | None]:
    """A name (or a key of _data/authors.yml), or a mapping of name, email, uri."""
    if isinstance(value, list):
        if not value:
            raise ValueError("must not be an empty list")
        value = value[0]            # jekyll-feed shows the first of `authors`
    if isinstance(value, dict):
        name = value.get("name")
        if name is None:
            raise ValueError("a mapping needs a 'name'")
        email, uri = value.get("email"), value.get("uri") or value.get("url")
        return (_str(name), _str(email) if email else None, _str(uri) if uri else None)
    return (_str(value), None, None)


def _image(value: Any) -> str:
    """A path or URL, or a mapping with `path` (jekyll-seo-tag's form)."""
    if isinstance(value, dict):
        if value.get("path") is None:
            raise ValueError("a mapping needs a 'path'")
        value = value["path"]
    return _str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ValueError(f"must be true or false, not {value!r}")


def _keep(value: Any) -> Any:
    return value


def _liquid_set(value: Any) -> bool:
    # Liquid's `default` filter passes a value on unless it is nil, false or empty.
    return value is not None and value is not False and value not in ("", [], {})


def _feed_excerpt_only(value: Any) -> bool:
    """jekyll-feed's per-post `feed: {excerpt_only: …}`. Its template reads
    `post.feed.excerpt_only | default: site.feed.excerpt_only`, so a post can
    turn it on but not off."""
    return isinstance(value, dict) and _liquid_set(value.get("excerpt_only"))


def _draft(value: Any) -> bool:
    # jekyll-feed leaves out `post.draft == true`: YAML's true only.
    return value is True


# front-matter key → (field it fills, parser). Later keys never override earlier ones.
FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "title": ("title", _str),
    "date": ("date", _keep),
    "updated": ("updated", _keep),
    "last_modified_at": ("updated", _keep),
    "categories": ("categories", _words),
    "category": ("category", _items),
    # Jekyll reads `tag:` when given, else `tags:` (Utils.pluralized_array_from_hash).
    "tag": ("tags", _items),
    "tags": ("tags", _words),
    "published": ("published", _bool),
    "slug": ("slug", _str),
    "permalink": ("permalink", _str),
    "guid": ("guid", _str),
    "excerpt": ("excerpt", _str),
    "description": ("excerpt", _str),
    "source_guid": ("source_guid", _str),
    "source_url": ("source_url", _str),
    "source_feed": ("source_feed", _str),
    "source_title": ("source_title", _str),
    "source_page": ("source_page", _str),
    "story": ("story", _str),
    "author": ("author", _author),
    "authors": ("author", _author),
    "image": ("image", _image),
    "feed": ("excerpt_only", _feed_excerpt_only),
    "draft": ("draft", _draft),
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
    return jekyll.titleize(slug) or slug


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
    except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
        # A value no rule above foresaw must still cost one post, not the scan.
        raise PostError(rel, f"cannot read post: {type(e).__name__}: {e}") from e


def _parse(rel: str, raw: bytes, stat: os.stat_result, config: Config) -> tuple[Post, str]:
    name = rel.rsplit("/", 1)[-1]
    kind = post_kind(name, config.markdown_ext)
    if kind is None:
        raise PostError(rel, "not a post file")
    jekyll_reading = config.jekyll_reading is not None
    if jekyll_reading and not jekyll.POST_FILENAME.match(name):
        # Jekyll's PostReader reads only dated file names: it publishes nothing else.
        raise PostError(rel, "Jekyll does not publish it: a post's file name must start "
                             "with its date (YYYY-MM-DD-title.md)")
    front, body = split_front_matter(decode(raw))
    try:
        meta = yamlsafe.load(front, max_bytes=MAX_FRONT_MATTER) if front.strip() else {}
    except YamlError as e:
        line = f" (line {e.line + 1})" if e.line else ""
        raise PostError(rel, f"front matter: {e.reason}{line}") from e
    if not isinstance(meta, dict):
        raise PostError(rel, "front matter must be a mapping of keys to values")
    f = read_fields({str(k): v for k, v in meta.items()})
    # Jekyll: folder categories, then `categories:`, then a singular `category:`.
    categories = _merge(_merge(folder_categories(rel), f.get("categories", ())),
                        f.get("category", ()))
    tz = dates.zone(post_zone(categories, config))
    try:
        date = dates.normalise(f["date"], tz) if "date" in f else dates.from_filename(name, tz)
        updated = dates.normalise(f["updated"], tz) if "updated" in f else date
    except dates.DateError as e:
        raise PostError(rel, str(e)) from e
    if date is None:
        raise PostError(rel, "no date: give 'date:' or a YYYY-MM-DD- file name")
    assert updated is not None
    stem = re.sub(r"\.*$", "", os.path.splitext(name)[0])   # Jekyll drops trailing dots
    file_slug = FILENAME_PREFIX.sub("", stem) or stem
    slug = f.get("slug") or file_slug
    parts = jekyll.UrlParts(rel=rel, slug=slug, categories=categories,
                            local=date.astimezone(tz))
    try:
        path = jekyll.post_url(f.get("permalink") or config.permalink, parts)
    except jekyll.PermalinkError as e:
        raise PostError(rel, str(e)) from e
    url = absolute(config, path)
    guid = f.get("guid") or url
    if config.jekyll_feed:
        # jekyll-feed's <id>: post.id made absolute; it wins over `guid:` so that
        # a site switching to feedsvc keeps every entry's id (DESIGN.md).
        guid = absolute(config, jekyll.post_id(path, slug))
    image = f.get("image")
    return Post(
        rel=rel, path=str(config.posts_dir / rel), mtime_ns=stat.st_mtime_ns, size=stat.st_size,
        kind=kind, title=f.get("title") or title_from_slug(file_slug),
        date=date, updated=max(updated, date), categories=categories,
        tags=_merge((), f.get("tags", ())), slug=slug, url=url, guid=guid,
        # jekyll-feed leaves out a post whose front matter says `draft: true`.
        published=f.get("published", True) and not (jekyll_reading and f.get("draft", False)),
        excerpt=f.get("excerpt"),
        source_guid=f.get("source_guid"), source_url=f.get("source_url"),
        source_feed=f.get("source_feed"), source_title=f.get("source_title"),
        source_page=f.get("source_page"), story=f.get("story"),
        author=f.get("author"), image=image_url(config, image) if image else None,
        category=f["category"][0] if len(f.get("category", ())) == 1 else None,
        excerpt_only=f.get("excerpt_only", False),
    ), body


def absolute(config: Config, path: str) -> str:
    """A site path as an absolute URL, by Jekyll's `absolute_url` filter."""
    return jekyll.absolute_url(config.site.url, config.baseurl, path)


def image_url(config: Config, value: str) -> str | None:
    """A front-matter image as an absolute http(s) URL (jekyll-feed: site paths
    through `absolute_url`); other schemes (javascript:, data:) are dropped."""
    if re.match(r"^https?://", value, re.IGNORECASE):
        return value
    if value.startswith("//"):
        return "https:" + value
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):
        return None
    return absolute(config, value)


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
