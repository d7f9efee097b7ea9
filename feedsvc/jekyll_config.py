"""A Jekyll site's own _config.yml → Config: one config for the site and its feeds.

Jekyll's keys are read as Jekyll and jekyll-feed read them (title, url,
baseurl, timezone, lang, author, permalink, markdown_ext, collections_dir,
`feed:`); every other top-level key is Jekyll's or a plugin's business and is
ignored. feedsvc's own settings live in a `feedsvc:` section (Jekyll ignores
it), where unknown keys are errors with a did-you-mean, as in config.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedsvc import jekyll, yamlsafe
from feedsvc.config import (
    SETTINGS,
    Author,
    Category,
    Config,
    Site,
    _authors,
    _kind,
    _Loader,
    _Section,
    jekyll_feed_settings,
    permalink_pattern,
    settings,
)
from feedsvc.errors import ConfigError, YamlError

# Folders of a site that hold no posts Jekyll reads: its output, and what its
# default `exclude:` leaves out (Jekyll::Configuration::DEFAULT_EXCLUDES).
SKIP_DIRS = frozenset({"_site", "node_modules", "vendor", "_drafts"})
JEKYLL_POSTS_LIMIT = 10   # jekyll-feed's default `feed.posts_limit`
AUTHORS_FILES = ("authors.yml", "authors.yaml")


def parse_jekyll_config(data: Any, path: Path,
                        lines: dict[tuple[str, ...], int] | None = None) -> Config:
    top = _Section(_Loader(path, lines or {}), data, ())
    source = path.parent / top.string("source", ".")
    site = _site(top)
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
        **values,
    )


def _site(top: _Section) -> Site:
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
