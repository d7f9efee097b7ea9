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

from feedsvc import yamlsafe
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


@dataclass(frozen=True)
class Source:
    url: str
    every: int = 900
    tags: tuple[str, ...] = ()


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
    summary_length: int = 200
    state_dir: Path = Path(".feedsvc")
    categories: Mapping[str, Category] = field(default_factory=dict)
    websub: WebSub | None = None
    cache: CacheConfig = field(default_factory=CacheConfig)
    allow_private_sources: bool = True
    index: IndexConfig = field(default_factory=IndexConfig)

    @property
    def serve_only(self) -> bool:
        """An instance of a cluster without a copy of posts_dir: it serves what
        the shared index holds and never scans, watches or collects."""
        return self.index.type == "postgres" and not self.posts_dir.is_dir()
    # Proxies (addresses or networks) whose X-Forwarded-For names the reader (subscribers.py).
    trusted_proxies: tuple[str, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    # Where nginx sends its log of feed requests it answered itself (deploy/nginx).
    subscriber_log: tuple[str, int] | None = None

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
        parts = urlsplit(text)
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


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError naming what is wrong."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot read config: {e}") from e
    try:
        data, lines = yamlsafe.load_with_lines(text)
    except YamlError as e:
        raise ConfigError(str(path), "", e.reason, e.line) from e
    if data is None:
        data = {}
    return parse_config(data, path, lines)


def parse_config(data: Any, path: Path, lines: dict[tuple[str, ...], int] | None = None) -> Config:
    top = _Section(_Loader(path, lines or {}), data, ())
    top.known(
        "site", "feeds_url", "posts_dir", "permalink", "limit", "max_limit", "max_age",
        "summary_length", "state_dir", "categories", "websub", "cache", "allow_private_sources",
        "index",
        "trusted_proxies", "admin_token", "subscriber_log",
    )
    site_sec = top.section("site")
    if site_sec is None:
        top.fail(("site",), "is required")
    assert site_sec is not None
    site = _site(site_sec)
    max_limit = top.integer("max_limit", 100, 1, 10_000)
    limit = top.integer("limit", 20, 1, max_limit)
    root = path.parent
    posts_dir = root / top.string("posts_dir", "_posts")
    index = _index(top.section("index"))
    # A cluster's serve-only instances have no posts folder: they read the shared index.
    if not posts_dir.is_dir() and index.type != "postgres":
        top.fail(("posts_dir",), f"folder {posts_dir} does not exist")
    permalink = top.string("permalink", Config.permalink)
    if not permalink.startswith("/"):
        top.fail(("permalink",), "must start with '/'")
    allow_private = top.get("allow_private_sources", True)
    if not isinstance(allow_private, bool):
        top.fail(("allow_private_sources",), "must be true or false")
    return Config(
        path=path,
        site=site,
        feeds_url=(top.url("feeds_url") or site.url).rstrip("/"),
        posts_dir=posts_dir,
        permalink=permalink,
        limit=limit,
        max_limit=max_limit,
        max_age=top.duration("max_age", 300, 0, 86_400),
        summary_length=top.integer("summary_length", 200, 10, 10_000),
        state_dir=root / top.string("state_dir", ".feedsvc"),
        categories=_categories(top, max_limit),
        websub=_websub(top.section("websub")),
        cache=_cache(top.section("cache")),
        allow_private_sources=allow_private,
        index=index,
        trusted_proxies=_trusted_proxies(top),
        admin_token=_admin_token(top),
        subscriber_log=_subscriber_log(top),
    )


def _subscriber_log(top: _Section) -> tuple[str, int] | None:
    """`127.0.0.1:5514` (or `[::1]:5514`): a UDP address on this machine."""
    text = top.string("subscriber_log")
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        top.fail(("subscriber_log",), f"must be host:port of a UDP address, not {text!r}")
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
    sec.known("title", "url", "timezone", "language", "author", "description")
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
    sec.known("title", "description", "link", "timezone", "limit", "max_age", "sources")
    return Category(
        slug=slug,
        title=sec.string("title", required=True),
        description=sec.string("description"),
        link=sec.url("link"),
        timezone=sec.timezone("timezone", None),
        limit=sec.integer("limit", None, 1, max_limit),
        max_age=sec.duration("max_age", None, 0, 86_400),
        sources=_sources(sec),
    )


def _sources(sec: _Section) -> tuple[Source, ...]:
    value = sec.get("sources", [])
    if not isinstance(value, list):
        sec.fail(("sources",), f"must be a list, not {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        sub = _Section(sec.loader, {"url": item} if isinstance(item, str) else item,
                       (*sec.path, "sources", str(i)))
        sub.known("url", "every", "tags")
        out.append(_source(sub))
    return tuple(out)


def _source(sub: _Section) -> Source:
    tags = sub.get("tags", [])
    if isinstance(tags, str):
        tags = tags.split()
    if not isinstance(tags, list):
        sub.fail(("tags",), "must be a list or a space-separated string")
    return Source(url=sub.url("url", required=True), every=sub.duration("every", 900, 1),
                  tags=tuple(str(t) for t in tags))


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
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        sec.fail(("url",), f"must be a redis:// URL, not {url!r}")
    return str(url)
