"""Load config.yaml once into frozen, validated dataclasses.

Every error names the file, the key path and, where known, the line, with a
"did you mean" hint for misspelt keys and time zones.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from feedsvc import jekyll, yamlsafe
from feedsvc.errors import ConfigError, YamlError
from feedsvc.xmlchars import XML_ILLEGAL

RESERVED_SLUGS = frozenset({"all"})
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
SLUG_RE = re.compile(r"^[\w-]+$")
DURATION_RE = re.compile(r"^(\d+)\s*([smhd]?)$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Author:
    name: str
    email: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class Site:
    title: str
    url: str
    timezone: str = "UTC"
    language: str | None = None
    author: Author | None = None
    description: str | None = None
    icon: str | None = None       # absolute URLs: RSS <image>, Atom <icon>, JSON favicon
    logo: str | None = None       # Atom <logo>, JSON icon


@dataclass(frozen=True)
class JekyllFeed:
    """jekyll-feed compatibility: its URLs (below baseurl) and its entry ids."""
    path: str = "/feed.xml"
    tags: bool = False
    tags_only: tuple[str, ...] | None = None
    tags_except: tuple[str, ...] = ()
    tags_path: str = "/feed/by_tag/"

    def category_path(self, slug: str) -> str:
        return f"/feed/{slug}.xml"

    def tag_path(self, tag: str) -> str:
        return f"{self.tags_path}{tag}.xml"

    def has_tag_feed(self, tag: str) -> bool:
        """jekyll-feed writes a tag feed only for plain names (A-Z, a-z, 0-9, _)."""
        return (self.tags and re.fullmatch(r"[a-zA-Z0-9_]+", tag) is not None
                and (self.tags_only is None or tag in self.tags_only)
                and tag not in self.tags_except)


@dataclass(frozen=True)
class Selector:
    """A CSS selector or an XPath expression, as written and as XPath (strings
    only: the config's repr is its digest, shared by instances)."""
    source: str
    xpath: str


@dataclass(frozen=True)
class PageRules:
    """How to read a news list page (upstream/pages.py)."""
    items: Selector
    title: Selector
    link: Selector
    date: Selector | None = None
    date_format: str | None = None      # strptime format; None: any date python-dateutil reads
    summary: Selector | None = None
    content: Selector | None = None


@dataclass(frozen=True)
class Source:
    url: str
    every: int = 900
    tags: tuple[str, ...] = ()
    page: PageRules | None = None       # a web page read by selectors, not a feed
    fulltext: bool = False              # fetch each new item's page for its article


@dataclass(frozen=True)
class Category:
    slug: str
    title: str
    description: str | None = None
    link: str | None = None
    timezone: str | None = None
    limit: int | None = None
    max_age: int | None = None
    sources: tuple[Source, ...] = ()
    entry_link: str | None = None     # None: the site's entry_link


@dataclass(frozen=True)
class NearDuplicates:
    """The same story from several sources (upstream/stories.py)."""
    enabled: bool = True
    threshold: float = 0.45   # estimated Jaccard of character 5-grams (docs/NEAR_DUPLICATES.md)
    # Site-wide and tag feeds show each story once (its earliest copy); False:
    # every copy everywhere. Part of the index identity (index/__init__.py).
    show_once: bool = True


@dataclass(frozen=True)
class CacheConfig:
    type: str = "memory"
    url: str | None = None


@dataclass(frozen=True)
class IndexConfig:
    """Where the post index lives: SQLite in state_dir, or a PostgreSQL
    database shared by a cluster (`url`, a postgresql:// URL)."""
    type: str = "sqlite"
    url: str | None = None


@dataclass(frozen=True)
class WebSub:
    hub: str


@dataclass(frozen=True)
class Config:
    path: Path
    site: Site
    feeds_url: str
    posts_dir: Path
    permalink: str = "/:categories/:year/:month/:day/:title.html"
    limit: int = 20
    max_limit: int = 100
    max_age: int = 300
    # Archived feeds (RFC 5005 section 4): Cache-Control max-age of a completed
    # archive document, and posts per archive (None: the feed's limit).
    archive_max_age: int = 86_400
    archive_size: int | None = None
    summary_length: int = 200
    state_dir: Path = Path(".feedsvc")
    categories: Mapping[str, Category] = field(default_factory=dict)
    websub: WebSub | None = None
    cache: CacheConfig = field(default_factory=CacheConfig)
    allow_private_sources: bool = True
    entry_link: str = "permalink"     # or "source": a collected entry links to the original
    near_duplicates: NearDuplicates = field(default_factory=NearDuplicates)
    baseurl: str = ""                     # Jekyll's baseurl: the site's path below site.url
    markdown_ext: frozenset[str] = jekyll.MARKDOWN_EXT
    jekyll_feed: JekyllFeed | None = None
    authors: Mapping[str, Author] = field(default_factory=dict)   # _data/authors.yml
    excerpt_only: bool = False
    skip_dirs: frozenset[str] = frozenset()    # folder names never scanned for posts
    # A site served from its _config.yml reads posts as Jekyll does: its
    # `exclude:`/`include:` and special names (EntryFilter), dated file names only,
    # `draft: true` out of the feeds. None for config.yaml.
    jekyll_reading: jekyll.EntryFilter | None = None
    # Other files the config was read from (_data/authors.yml): a change reloads it.
    # Left out of repr and comparisons: where a site is mounted is not what it serves.
    also_read: tuple[Path, ...] = field(default=(), compare=False, repr=False)
    index: IndexConfig = field(default_factory=IndexConfig)

    @property
    def serve_only(self) -> bool:
        """An instance of a cluster without a copy of posts_dir: it serves what
        the shared index holds and never scans, watches or collects."""
        return self.index.type == "postgres" and not self.posts_dir.is_dir()
    # Proxies (addresses or networks) whose X-Forwarded-For names the reader (subscribers.py).
    trusted_proxies: tuple[str, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    # Where nginx logs the feed requests it answered itself (deploy/nginx,
    # subscriber_log.py): the file it writes, or a loopback UDP address.
    subscriber_log: Path | tuple[str, int] | None = None

    @property
    def root(self) -> Path:
        return self.path.parent

    def category_limit(self, slug: str) -> int:
        cat = self.categories.get(slug)
        return cat.limit if cat and cat.limit else self.limit

    def category_max_age(self, slug: str) -> int:
        cat = self.categories.get(slug)
        return cat.max_age if cat and cat.max_age is not None else self.max_age


@cache
def _zones() -> frozenset[str]:
    # "localtime" is the host's zone under another name (a link to /etc/localtime),
    # and "Factory" is a placeholder: neither is a zone a site can mean.
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def parse_duration(value: object) -> int:
    """The one syntax of every duration key (max_age, every, …): a whole number
    of seconds (300), or a number with a unit, s, m, h or d ('30s', '5m', '1h',
    '1d'). Returns seconds; raises ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = DURATION_RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"invalid interval {value!r} (expected seconds, or a number with "
                         "s, m, h or d: 30s, 5m, 1h, 1d)")
    return int(m.group(1)) * UNITS[m.group(2) or "s"]


class _Section:
    """A mapping being read: knows its key path, reports unknown keys."""

    def __init__(self, loader: _Loader, data: Any, path: tuple[str, ...]) -> None:
        self.loader, self.path = loader, path
        if not isinstance(data, dict):
            self.fail((), f"must be a mapping, not {_kind(data)}")
        self.data: dict[str, Any] = {str(k): v for k, v in data.items()}

    def fail(self, key: tuple[str, ...], message: str) -> None:
        self.loader.fail((*self.path, *key), message)

    def known(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                hint = difflib.get_close_matches(key, keys, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.fail((key,), f"unknown key{extra}")

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail((key,), "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail((key,), f"must be a string, not {_kind(value)}")
        text = str(value).strip()
        bad = XML_ILLEGAL.search(text)
        if bad:
            self.fail((key,), f"contains the control character U+{ord(bad.group()):04X}, "
                              "which no feed can carry")
        if required and not text:
            self.fail((key,), "must not be empty")
        return text

    def integer(self, key: str, default: int | None, low: int, high: int) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail((key,), f"must be a whole number, not {_kind(value)}")
        if not low <= value <= high:
            self.fail((key,), f"must be between {low} and {high}, not {value}")
        return value

    def duration(self, key: str, default: int | None, low: int, high: int | None = None) -> Any:
        """A duration key (see parse_duration) in seconds, between low and high."""
        value = self.data.get(key)
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            self.fail((key,), str(e))
        if seconds < low or (high is not None and seconds > high):
            bounds = (f"between {low} and {high} seconds" if high is not None
                      else f"at least {low} second{'s' * (low != 1)}")
            self.fail((key,), f"must be {bounds}, not {value}")
        return seconds

    def url(self, key: str, *, required: bool = False) -> Any:
        text = self.string(key, required=required)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as e:      # "Invalid IPv6 URL" for a stray '[' (found by the fuzzer)
            self.fail((key,), f"is not a valid URL ({e}): {text!r}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail((key,), f"must be an absolute http(s) URL, not {text!r}")
        return text

    def timezone(self, key: str, default: str | None) -> Any:
        name = self.string(key)
        if name is None:
            return default
        if name not in _zones():
            hint = difflib.get_close_matches(name, sorted(_zones()), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            self.fail((key,), f"unknown time zone '{name}'{extra}")
        return name

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail((key,), f"must be true or false, not {value!r}")
        return bool(value)

    def section(self, key: str) -> _Section | None:
        value = self.data.get(key)
        return None if value is None else _Section(self.loader, value, (*self.path, key))


class _Loader:
    def __init__(self, path: Path, lines: dict[tuple[str, ...], int]) -> None:
        self.path, self.lines = path, lines

    def fail(self, key: tuple[str, ...], message: str) -> None:
        line = None
        for n in range(len(key), 0, -1):
            line = self.lines.get(key[:n])
            if line:
                break
        raise ConfigError(str(self.path), ".".join(key), message, line)


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


JEKYLL_CONFIGS = ("_config.yml", "_config.yaml")


def config_file(path: str | Path) -> Path:
    """The config file meant by `--config`: a file, or a folder holding a Jekyll
    site's _config.yml (or a config.yaml)."""
    path = Path(path).absolute()
    if path.is_dir():
        for name in (*JEKYLL_CONFIGS, "config.yaml"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(str(path), "", "no _config.yml or config.yaml in this folder")
    return path


def is_jekyll_config(path: Path) -> bool:
    return path.name in JEKYLL_CONFIGS


def _read_yaml(path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot read config: {e}") from e
    try:
        data, lines = yamlsafe.load_with_lines(text)
    except YamlError as e:
        raise ConfigError(str(path), "", e.reason, e.line) from e
    return ({} if data is None else data), lines


def load_config(path: str | Path) -> Config:
    """Read and validate a config file (config.yaml, or a Jekyll site's
    _config.yml, or the folder of either); raise ConfigError naming what is wrong."""
    path = config_file(path)
    data, lines = _read_yaml(path)
    if is_jekyll_config(path):
        return parse_jekyll_config(data, path, lines)
    return parse_config(data, path, lines)


SETTINGS = ("feeds_url", "limit", "max_limit", "max_age", "archive_max_age", "archive_size",
            "summary_length", "state_dir",
            "categories", "websub", "cache", "allow_private_sources", "entry_link",
            "near_duplicates", "jekyll_feed",
            "excerpt_only", "trusted_proxies", "admin_token", "subscriber_log", "index")


def parse_config(data: Any, path: Path, lines: dict[tuple[str, ...], int] | None = None) -> Config:
    top = _Section(_Loader(path, lines or {}), data, ())
    top.known("site", "posts_dir", "permalink", "authors", *SETTINGS)
    site_sec = top.section("site")
    if site_sec is None:
        top.fail(("site",), "is required")
    assert site_sec is not None
    site = _site(site_sec)
    root = path.parent
    posts_dir = root / top.string("posts_dir", "_posts")
    index = _index(top.section("index"))
    # A cluster's serve-only instances have no posts folder: they read the shared index.
    if not posts_dir.is_dir() and index.type != "postgres":
        top.fail(("posts_dir",), f"folder {posts_dir} does not exist")
    authors = top.section("authors")
    return Config(
        path=path,
        site=site,
        posts_dir=posts_dir,
        permalink=permalink_pattern(top, "permalink", Config.permalink, require_slash=True),
        authors=_authors(authors) if authors else {},
        index=index,
        **settings(top, site, root),
    )


def settings(top: _Section, site: Site, root: Path,
             jekyll_feed: JekyllFeed | None = None) -> dict[str, Any]:
    """The service's own settings (SETTINGS), the same in config.yaml and in the
    `feedsvc:` section of a Jekyll site's _config.yml."""
    max_limit = top.integer("max_limit", 100, 1, 10_000)
    limit = top.integer("limit", 20, 1, max_limit)
    allow_private = top.get("allow_private_sources", True)
    if not isinstance(allow_private, bool):
        top.fail(("allow_private_sources",), "must be true or false")
    return dict(
        feeds_url=(top.url("feeds_url") or site.url).rstrip("/"),
        limit=limit,
        max_limit=max_limit,
        max_age=top.duration("max_age", 300, 0, 86_400),
        archive_max_age=top.duration("archive_max_age", 86_400, 0, 366 * 86_400),
        archive_size=top.integer("archive_size", None, 1, 10_000),
        summary_length=top.integer("summary_length", 200, 10, 10_000),
        state_dir=root / top.string("state_dir", ".feedsvc"),
        categories=_categories(top, max_limit),
        websub=_websub(top.section("websub")),
        cache=_cache(top.section("cache")),
        allow_private_sources=allow_private,
        entry_link=_entry_link(top) or "permalink",
        near_duplicates=_near_duplicates(top),
        jekyll_feed=_jekyll_feed(top, jekyll_feed),
        excerpt_only=top.boolean("excerpt_only", False),
        trusted_proxies=_trusted_proxies(top),
        admin_token=_admin_token(top),
        subscriber_log=_subscriber_log(top, root),
    )


def _near_duplicates(top: _Section) -> NearDuplicates:
    value = top.get("near_duplicates")
    if value is None or value is True:
        return NearDuplicates()
    if value is False:
        return NearDuplicates(enabled=False, show_once=False)
    sec = top.section("near_duplicates")
    assert sec is not None
    sec.known("enabled", "threshold", "show_once")
    enabled = sec.get("enabled", True)
    if not isinstance(enabled, bool):
        sec.fail(("enabled",), "must be true or false")
    # Stories already marked are still shown once when detection is switched off,
    # unless this says otherwise.
    show_once = sec.get("show_once", True)
    if not isinstance(show_once, bool):
        sec.fail(("show_once",), f"must be true or false, not {show_once!r}")
    threshold = sec.get("threshold", NearDuplicates.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
            or not 0 < threshold <= 1:
        sec.fail(("threshold",), f"must be a number above 0 and at most 1, not {threshold!r}")
    return NearDuplicates(enabled, float(threshold), show_once)


ENTRY_LINKS = ("permalink", "source")


def _entry_link(sec: _Section) -> str | None:
    value: str | None = sec.string("entry_link")
    if value is not None and value not in ENTRY_LINKS:
        sec.fail(("entry_link",), f"must be 'permalink' (our page) or 'source' (the original "
                                  f"article), not {value!r}")
    return value
def permalink_pattern(sec: _Section, key: str, default: str = "date", *,
                      require_slash: bool = False) -> str:
    """A permalink setting: one of Jekyll's styles by name, or a pattern whose
    placeholders Jekyll knows."""
    pattern = jekyll.style(sec.string(key, default))
    if require_slash and not pattern.startswith("/"):
        sec.fail((key,), "must start with '/' (or be date, pretty, ordinal, weekdate or none)")
    bad = jekyll.unknown_placeholders(pattern)
    if bad:
        hint = difflib.get_close_matches(bad[0], sorted(jekyll.PLACEHOLDERS), n=1)
        extra = f" (did you mean ':{hint[0]}'?)" if hint else ""
        sec.fail((key,), f"unknown placeholder ':{bad[0]}'{extra}; Jekyll knows "
                         + ", ".join(":" + p for p in sorted(jekyll.PLACEHOLDERS)))
    return pattern


def _jekyll_feed(top: _Section, default: JekyllFeed | None) -> JekyllFeed | None:
    """`jekyll_feed: true/false`, or a mapping of jekyll-feed's own keys."""
    value = top.data.get("jekyll_feed")
    if value is None:
        return default
    if isinstance(value, bool):
        return (default or JekyllFeed()) if value else None
    sec = top.section("jekyll_feed")
    assert sec is not None
    return jekyll_feed_settings(sec)


def jekyll_feed_settings(sec: _Section, strict: bool = True) -> JekyllFeed:
    """jekyll-feed's `feed:` keys: path, tags (true or only/except/path)."""
    if strict:
        sec.known("path", "tags", "categories", "posts_limit", "excerpt_only",
                  "collections", "disable_in_development")
    path = sec.string("path", "/feed.xml")
    tags = sec.data.get("tags")
    if isinstance(tags, dict):
        t = sec.section("tags")
        assert t is not None
        if strict:
            t.known("only", "except", "path")
        only = t.get("only")
        return JekyllFeed(_lead(path), True,
                          tuple(map(str, only)) if isinstance(only, list) else None,
                          tuple(map(str, t.get("except", []) or [])),
                          _lead(t.string("path", "/feed/by_tag/")))
    return JekyllFeed(_lead(path), bool(tags))


def _lead(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _authors(sec: _Section) -> dict[str, Author]:
    """_data/authors.yml (or `authors:` of config.yaml): key → name, email, uri."""
    out = {}
    for key, value in sec.data.items():
        if isinstance(value, str):
            out[key] = Author(value)
            continue
        a = sec.section(key)
        if a is None:
            continue
        out[key] = Author(a.string("name") or key, a.string("email"),
                          a.string("uri") or a.string("url"))
    return out


def _subscriber_log(top: _Section, root: Path) -> Path | tuple[str, int] | None:
    """The file nginx writes its subscriber lines to (a path: relative ones are
    below the config's folder), or `127.0.0.1:5514` / `[::1]:5514`, a UDP
    address on this machine."""
    text: str | None = top.string("subscriber_log")
    if text is None:
        return None
    host, colon, port = text.rpartition(":")
    if not colon or "/" in text:
        if not text.strip():
            top.fail(("subscriber_log",), "must be a file nginx writes, or host:port of a UDP address")
        return Path(root) / text
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        top.fail(("subscriber_log",), f"must be a file nginx writes, or host:port of a UDP "
                                      f"address, not {text!r}")
    if not ip.is_loopback:
        # Anyone who can send to it can add counts: keep it on this machine.
        top.fail(("subscriber_log",), f"must be a loopback address, not {host}")
    if not 0 < number < 65536:
        top.fail(("subscriber_log",), f"no such port: {port}")
    return str(ip), number


def _trusted_proxies(top: _Section) -> tuple[str, ...]:
    value = top.get("trusted_proxies", [])
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        top.fail(("trusted_proxies",), f"must be a list of addresses or networks, not {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            top.fail(("trusted_proxies", str(i)), f"not an IP address or network: {item!r}")
    return tuple(out)


ADMIN_TOKEN_MIN = 16


def _admin_token(top: _Section) -> str | None:
    """The one secret of the admin pages (sent as `Authorization: Bearer …`)."""
    value = top.data.get("admin_token")
    if value is None:
        return None
    if not isinstance(value, str):
        top.fail(("admin_token",), f"must be a string, not {_kind(value)}")
    if len(value) < ADMIN_TOKEN_MIN or not value.isprintable() or value != value.strip():
        top.fail(("admin_token",), f"must be at least {ADMIN_TOKEN_MIN} printable characters "
                                   "without surrounding spaces")
    return str(value)


def _site(sec: _Section) -> Site:
    sec.known("title", "url", "timezone", "language", "author", "description", "icon", "logo")
    author = None
    value = sec.get("author")
    if isinstance(value, str):
        author = Author(name=value)
    elif value is not None:
        a = sec.section("author")
        assert a is not None
        a.known("name", "email", "uri")
        author = Author(a.string("name", required=True), a.string("email"), a.url("uri"))
    return Site(
        title=sec.string("title", required=True),
        url=sec.url("url", required=True).rstrip("/"),
        timezone=sec.timezone("timezone", "UTC"),
        language=sec.string("language"),
        author=author,
        description=sec.string("description"),
        icon=sec.url("icon"),
        logo=sec.url("logo"),
    )


def _categories(top: _Section, max_limit: int) -> dict[str, Category]:
    sec = top.section("categories")
    if sec is None:
        return {}
    cats: dict[str, Category] = {}
    for slug in sec.data:
        if slug in RESERVED_SLUGS:
            sec.fail((slug,), f"'{slug}' is reserved for the feed of every category")
        if not SLUG_RE.match(slug):
            sec.fail((slug,), "a slug may hold only letters, digits, '_' and '-'")
        cats[slug] = _category(sec, slug, max_limit)
    return cats


def _category(parent: _Section, slug: str, max_limit: int) -> Category:
    if parent.data[slug] is None:
        parent.fail((slug,), "needs at least a title")
    sec = parent.section(slug)
    assert sec is not None
    sec.known("title", "description", "link", "timezone", "limit", "max_age", "sources",
              "entry_link")
    return Category(
        slug=slug,
        title=sec.string("title", required=True),
        description=sec.string("description"),
        link=sec.url("link"),
        timezone=sec.timezone("timezone", None),
        limit=sec.integer("limit", None, 1, max_limit),
        max_age=sec.duration("max_age", None, 0, 86_400),
        sources=_sources(sec),
        entry_link=_entry_link(sec),
    )


def _sources(sec: _Section) -> tuple[Source, ...]:
    value = sec.get("sources", [])
    if not isinstance(value, list):
        sec.fail(("sources",), f"must be a list, not {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        sub = _Section(sec.loader, {"url": item} if isinstance(item, str) else item,
                       (*sec.path, "sources", str(i)))
        sub.known("url", "every", "tags", "page", "fulltext")
        out.append(_source(sub))
    return tuple(out)


def _source(sub: _Section) -> Source:
    tags = sub.get("tags", [])
    if isinstance(tags, str):
        tags = tags.split()
    if not isinstance(tags, list):
        sub.fail(("tags",), "must be a list or a space-separated string")
    page = sub.section("page")
    fulltext = sub.get("fulltext", False)
    if not isinstance(fulltext, bool):
        sub.fail(("fulltext",), "must be true or false")
    return Source(url=sub.url("url", required=True), every=sub.duration("every", 900, 1),
                  tags=tuple(str(t) for t in tags), page=_page(page) if page else None,
                  fulltext=fulltext)


XPATH_START = ("/", "./", "(", "xpath:")


def _page(sec: _Section) -> PageRules:
    sec.known("items", "title", "link", "date", "date_format", "summary", "content")
    fmt = sec.string("date_format")
    if fmt is not None and "%" not in fmt:
        sec.fail(("date_format",), f"must be a strptime format such as '%Y-%m-%d %H:%M', "
                                   f"not {fmt!r}")
    return PageRules(
        items=_selector(sec, "items", required=True), title=_selector(sec, "title", required=True),
        link=_selector(sec, "link", required=True), date=_selector(sec, "date"),
        date_format=fmt, summary=_selector(sec, "summary"), content=_selector(sec, "content"))


def _selector(sec: _Section, key: str, *, required: bool = False) -> Any:
    """A CSS selector, or XPath when it starts with '/', './', '(' or 'xpath:'."""
    text = sec.string(key, required=required)
    if text is None:
        return None
    # Imported only when a page source is configured.
    from lxml import etree

    if text.startswith(XPATH_START):
        xpath = text.removeprefix("xpath:").strip()
    else:
        from cssselect import GenericTranslator, SelectorError

        try:
            xpath = GenericTranslator().css_to_xpath(text)
        except SelectorError as e:
            sec.fail((key,), f"invalid CSS selector {text!r}: {e}")
    try:
        etree.XPath(xpath)
    except etree.XPathSyntaxError as e:
        sec.fail((key,), f"invalid XPath {xpath!r}: {e}")
    return Selector(text, xpath)


def _websub(sec: _Section | None) -> WebSub | None:
    if sec is None:
        return None
    sec.known("hub")
    return WebSub(hub=sec.url("hub", required=True))


def _cache(sec: _Section | None) -> CacheConfig:
    if sec is None:
        return CacheConfig()
    sec.known("type", "url")
    kind = sec.string("type", "memory")
    checks: dict[str, Callable[[], CacheConfig]] = {
        "memory": lambda: CacheConfig(),
        "redis": lambda: CacheConfig("redis", _redis_url(sec)),
    }
    if kind not in checks:
        sec.fail(("type",), f"must be 'memory' or 'redis', not {kind!r}")
    return checks[kind]()


def _index(sec: _Section | None) -> IndexConfig:
    if sec is None:
        return IndexConfig()
    sec.known("type", "url")
    kind = sec.string("type", "sqlite")
    if kind == "sqlite":
        if sec.get("url", None) is not None:
            sec.fail(("url",), "is for type: postgres (SQLite lives in state_dir)")
        return IndexConfig()
    if kind != "postgres":
        sec.fail(("type",), f"must be 'sqlite' or 'postgres', not {kind!r}")
    url = sec.string("url", "")
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        sec.fail(("url",), f"must be a postgresql:// URL, not {url!r}")
    return IndexConfig("postgres", str(url))


def _redis_url(sec: _Section) -> str:
    url = sec.string("url", "redis://127.0.0.1:6379/0")
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "unix"):
        sec.fail(("url",), f"must be a redis:// URL, not {url!r}")
    return str(url)


# -- a Jekyll site's _config.yml ------------------------------------------------------
# Jekyll's keys are read as Jekyll and jekyll-feed read them (title, url, baseurl,
# timezone, lang, author, permalink, markdown_ext, collections_dir, `feed:`); every
# other top-level key is Jekyll's or a plugin's business and is ignored. feedsvc's
# own settings live in a `feedsvc:` section (Jekyll ignores it), where unknown keys
# are errors with a did-you-mean, as in config.yaml.

# Folders of a site that hold no posts Jekyll reads: its output, and what its
# default `exclude:` leaves out (Jekyll::Configuration::DEFAULT_EXCLUDES).
SKIP_DIRS = frozenset({"_site", "node_modules", "vendor", "_drafts"})
JEKYLL_POSTS_LIMIT = 10   # jekyll-feed's default `feed.posts_limit`
AUTHORS_FILES = ("authors.yml", "authors.yaml")


def parse_jekyll_config(data: Any, path: Path,
                        lines: dict[tuple[str, ...], int] | None = None) -> Config:
    top = _Section(_Loader(path, lines or {}), data, ())
    source = path.parent / top.string("source", ".")
    site = _jekyll_site(top)
    baseurl = "/" + (top.string("baseurl", "") or "").strip("/")
    baseurl = "" if baseurl == "/" else baseurl
    feed_sec = top.section("feed") or _Section(top.loader, {}, ("feed",))
    feed = jekyll_feed_settings(feed_sec, strict=False)
    own = top.section("feedsvc") or _Section(top.loader, {}, ("feedsvc",))
    own.known(*SETTINGS)
    _default_own(own, top, feed_sec, site, baseurl)
    posts_dir = source / (top.string("collections_dir", "") or "")
    if not posts_dir.is_dir():
        top.fail(("collections_dir",), f"folder {posts_dir} does not exist")
    data_dir = source / (top.string("data_dir", "_data") or "_data")
    values = settings(own, site, path.parent, jekyll_feed=feed)
    values["categories"] = _feed_categories(feed_sec, values["categories"], site)
    return Config(
        path=path,
        site=site,
        posts_dir=posts_dir,
        permalink=permalink_pattern(top, "permalink", "date"),
        baseurl=baseurl,
        markdown_ext=_markdown_ext(top),
        authors=_data_authors(data_dir, top),
        also_read=tuple(data_dir / n for n in AUTHORS_FILES),
        skip_dirs=SKIP_DIRS | {Path(top.string("destination", "_site") or "_site").name},
        jekyll_reading=_entry_filter(top),
        index=_index(own.section("index")),
        **values,
    )


def _entry_filter(top: _Section) -> jekyll.EntryFilter:
    """Jekyll's `exclude:` (with its DEFAULT_EXCLUDES added) and `include:`."""
    lists = {}
    for key, default in (("exclude", ()), ("include", (".htaccess",))):
        value = top.get(key)
        if value is None:
            lists[key] = tuple(default)
        elif isinstance(value, list):
            lists[key] = tuple(str(v) for v in value if v is not None)
        else:
            # As Jekyll, which refuses to build such a site.
            top.fail((key,), f"must be a list, not {_kind(value)}")
    exclude = tuple(dict.fromkeys((*lists["exclude"], *jekyll.DEFAULT_EXCLUDES)))
    return jekyll.EntryFilter(exclude, lists["include"],
                              (top.string("collections_dir", "") or "").strip("/"))


def _jekyll_site(top: _Section) -> Site:
    title = top.string("title") or top.string("name")
    if not title:
        top.fail(("title",), "is required (the title of the feeds)")
    url = top.url("url")
    if not url:
        top.fail(("url",), "is required: feeds need absolute links (e.g. https://example.com)")
    base = url.rstrip("/") + "/" + (top.string("baseurl", "") or "").strip("/")
    return Site(
        title=title,
        url=url.rstrip("/"),
        timezone=top.timezone("timezone", "UTC"),
        language=top.string("lang"),
        author=_site_author(top),
        description=top.string("description"),
        icon=_site_url(top, "icon", base),
        logo=_site_url(top, "logo", base),
    )


def _site_author(top: _Section) -> Author | None:
    value = top.data.get("author")
    if value is None:
        return None
    if isinstance(value, dict):
        a = top.section("author")
        assert a is not None
        name = a.string("name")
        if not name:
            return None
        return Author(name, a.string("email"), a.string("uri") or a.string("url"))
    return Author(top.string("author"))


def _site_url(top: _Section, key: str, base: str) -> str | None:
    value = top.string(key)
    if not value:
        return None
    return value if "://" in value else jekyll.normalize(base.rstrip("/") + "/" + value.lstrip("/"))


def _default_own(own: _Section, top: _Section, feed_sec: _Section, site: Site,
                 baseurl: str) -> None:
    """Defaults of the `feedsvc:` section taken from Jekyll's keys."""
    if "limit" not in own.data:
        own.data["limit"] = feed_sec.integer("posts_limit", JEKYLL_POSTS_LIMIT, 1, 10_000)
    if "excerpt_only" not in own.data:
        own.data["excerpt_only"] = feed_sec.boolean("excerpt_only", False)
    if "max_limit" not in own.data:
        own.data["max_limit"] = max(100, own.data["limit"]) if isinstance(
            own.data["limit"], int) else 100
    if "feeds_url" not in own.data:
        # The feeds live where jekyll-feed's did: below the site's baseurl.
        own.data["feeds_url"] = site.url + baseurl
    cats = own.data.get("categories")
    if isinstance(cats, dict):
        for slug, cat in cats.items():
            if cat is None:
                cats[slug] = cat = {}
            if isinstance(cat, dict) and "title" not in cat:
                cat["title"] = _category_title(site, str(slug))


def _category_title(site: Site, slug: str) -> str:
    # jekyll-feed's title: `site.title | append: " | " | append: category | capitalize`.
    return f"{site.title} | {slug[:1].upper()}{slug[1:].lower()}"


def _feed_categories(feed_sec: _Section, own: dict[str, Category],
                     site: Site) -> dict[str, Category]:
    """jekyll-feed's `feed.categories`, then those the `feedsvc:` section adds
    (or describes further)."""
    names = feed_sec.get("categories", [])
    if not isinstance(names, list):
        feed_sec.fail(("categories",), f"must be a list, not {_kind(names)}")
    cats: dict[str, Category] = {}
    for name in map(str, names):
        if name == "all" or not name.replace("-", "").replace("_", "").isalnum():
            feed_sec.fail(("categories",), f"{name!r}: feedsvc serves categories whose "
                                           "names are letters, digits, '_' and '-' (not 'all')")
        cats[name] = Category(slug=name, title=_category_title(site, name))
    cats.update(own)
    return cats


def _markdown_ext(top: _Section) -> frozenset[str]:
    value = top.string("markdown_ext", ",".join(jekyll.DEFAULT_MARKDOWN_EXT))
    exts = frozenset(e.strip().lstrip(".").lower() for e in value.split(",") if e.strip())
    return exts or jekyll.MARKDOWN_EXT


def _data_authors(data_dir: Path, top: _Section) -> dict[str, Author]:
    """_data/authors.yml (or .yaml), as jekyll-feed looks authors up there."""
    for name in AUTHORS_FILES:
        path = data_dir / name
        if not path.is_file():
            continue
        try:
            data, lines = yamlsafe.load_with_lines(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(str(path), "", f"cannot read: {e}") from e
        except YamlError as e:
            raise ConfigError(str(path), "", e.reason, e.line) from e
        if data is None:
            return {}
        return _authors(_Section(_Loader(path, lines), data, ()))
    return {}
