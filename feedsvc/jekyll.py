"""Jekyll 4.3's URL rules, ported from its source and checked against its output
(tests/test_jekyll_compat.py builds sites with the real `jekyll`): permalink
styles and placeholders, `Utils.slugify`, `URL.escape_path` and `sanitize_url`,
the `absolute_url` filter (Addressable's normalisation) and `post.id`.

Pure functions of strings and dates; posts.py calls them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import posixpath
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

# Jekyll's Configuration::STYLE_TO_PERMALINK.
STYLES = {
    "none": "/:categories/:title:output_ext",
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "weekdate": "/:categories/:year/W:week/:short_day/:title:output_ext",
}
DEFAULT_MARKDOWN_EXT = ("markdown", "mkdown", "mkdn", "mkd", "md")
MARKDOWN_EXT = frozenset(DEFAULT_MARKDOWN_EXT)
# Document::DATE_FILENAME_MATCHER, for the file name alone: years of two to four
# digits, one- or two-digit months and days (`2017-2-5-x.md`, `22-03-05-x.md`).
FILENAME_DATE = re.compile(r"^(\d{2,4})-(\d{1,2})-(\d{1,2})-(.*)$")
# Jekyll's DATE_FILENAME_MATCHER as a whole: a file in `_posts` whose name does
# not match it is no post of Jekyll's (it needs an extension too).
POST_FILENAME = re.compile(r"^\d{2,4}-\d{1,2}-\d{1,2}-[^/]*\.[^./]+$")
PLACEHOLDER = re.compile(r":([a-z_]+)")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
# RFC 3986 characters Addressable leaves as they are in a path (and decodes
# from %XX): unreserved, sub-delims, ':' and '@'.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCHAR = _UNRESERVED | frozenset("!$&'()*+,;=:@")
_URI = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.S)
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class PermalinkError(ValueError):
    """A permalink pattern with a placeholder Jekyll does not know (its build fails)."""


def style(value: str) -> str:
    """A `permalink:` setting of _config.yml → its pattern (built-in styles by name)."""
    return STYLES.get(value, value)


# -- Utils.slugify ----------------------------------------------------------------
def _kept(ch: str, extra: str) -> bool:
    # Jekyll's [^\p{M}\p{L}\p{Nd}<extra>]: marks, letters and decimal digits stay.
    cat = unicodedata.category(ch)
    return cat[0] in "ML" or cat == "Nd" or ch in extra


def slugify(text: str, mode: str = "default", cased: bool = False) -> str:
    """Jekyll's Utils.slugify for the modes its URLs use: runs of other
    characters become one '-', one leading and one trailing '-' go."""
    extra = "._~!$&'()+,;=@" if mode == "pretty" else ""
    out: list[str] = []
    for ch in text:
        if _kept(ch, extra):
            out.append(ch)
        elif not out or out[-1] != "\0":
            out.append("\0")
    slug = "".join(out).replace("\0", "-")
    slug = re.sub(r"^-|-$", "", slug)
    return slug if cased else slug.lower()


def titleize(slug: str) -> str:
    """Utils.titleize_slug: the title Jekyll gives a post without one."""
    return " ".join(w[:1].upper() + w[1:].lower() for w in slug.split("-"))


# -- URL escaping and normalisation -------------------------------------------------
def _encode(text: str, keep: frozenset[str]) -> str:
    return "".join(c if c in keep else quote(c, safe="") for c in text)


def escape_path(value: str) -> str:
    """URL.escape_path: a placeholder's value made safe for a path
    (Addressable::URI.encode, then the first '#' as %23)."""
    if not value or re.fullmatch(r"[a-zA-Z0-9./-]+", value):
        return value
    m = _URI.match(value)
    assert m is not None
    path, query, fragment = m.group(3), m.group(4), m.group(5)
    if m.group(1) or m.group(2) is not None:
        path = value  # Jekyll's own values never look like a scheme or authority
        query = fragment = None
    out = _encode(path, _PCHAR | {"/"})
    if query is not None:
        out += "?" + _encode(query, _PCHAR | {"/", "?"})
    if fragment is not None:
        out += "#" + _encode(fragment, _PCHAR | {"/", "?"})
    return out.replace("#", "%23", 1)


def sanitize_url(path: str) -> str:
    """URL#sanitize_url: '..' → '/', './' dropped, slashes squeezed, one leading '/'."""
    path = ("/" + path).replace("..", "/").replace("./", "")
    return re.sub(r"/{2,}", "/", path)


def _normalize_component(text: str, keep: frozenset[str], leave_encoded: str = "") -> str:
    """Addressable's normalize_component: %XX of a kept character is decoded,
    every other character outside `keep` is encoded, hex in upper case."""
    # Split on valid escapes (the hex digits are the odd items), so that a lone
    # '%' is itself encoded, as %25.
    parts = _PERCENT.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            ch = chr(int(part, 16))
            out.append(ch if ch in keep and ch not in leave_encoded else "%" + part.upper())
        else:
            out.append(_encode(part, keep))
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4."""
    if not path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    joined = "/".join(out)
    return joined if joined.startswith("/") or not path.startswith("/") else "/" + joined


def normalize(url: str) -> str:
    """Addressable::URI.parse(url).normalize.to_s, for http(s) URLs and paths."""
    m = _URI.match(url)
    assert m is not None
    scheme, authority, path, query, fragment = m.groups()
    out = ""
    if scheme:
        scheme = scheme.lower()
        out += scheme + ":"
    if authority is not None:
        host, _, port = authority.lower().rpartition(":") if ":" in authority else (
            authority.lower(), "", "")
        if port and _DEFAULT_PORTS.get(scheme or "") == port:
            port = ""
        out += "//" + host + (":" + port if port else "")
    path = _normalize_component(path.rstrip(" \t\r\n"), _PCHAR | {"/"}, "/")
    path = _remove_dot_segments(path)
    if authority is not None and not path:
        path = "/"
    out += path
    if query is not None:
        out += "?" + _normalize_component(query, _PCHAR | {"/", "?"}, "&=+")
    if fragment is not None:
        out += "#" + _normalize_component(fragment, _PCHAR | {"/", "?"})
    return out


def absolute_url(site_url: str, baseurl: str, path: str) -> str:
    """The `absolute_url` filter: site url + baseurl + path, normalised. An
    absolute input is kept as it is."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", path):
        return path
    relative = normalize(_lead(baseurl.rstrip("/")) + _lead(path)) if baseurl.strip("/") \
        else normalize(_lead(path))
    return normalize(site_url.rstrip("/") + relative)


def _lead(part: str) -> str:
    return part if part.startswith("/") else "/" + part


# -- placeholders ------------------------------------------------------------------
@dataclass(frozen=True)
class UrlParts:
    """What Jekyll's UrlDrop reads from a post."""
    rel: str                    # path below the site source, '/'-separated
    slug: str                   # data["slug"]: front-matter slug, else the file's
    categories: tuple[str, ...]
    local: dt.datetime          # the post's date in the site's zone
    output_ext: str = ".html"


def _placeholders(p: UrlParts) -> Mapping[str, Callable[[], str]]:
    d = p.local
    name = posixpath.splitext(p.rel.rsplit("/", 1)[-1])[0]
    iso = d.isocalendar()
    return {
        "collection": lambda: "posts",
        "name": lambda: slugify(name),
        "title": lambda: slugify(p.slug, "pretty", cased=True),
        "slug": lambda: slugify(p.slug),
        "categories": lambda: "/".join(dict.fromkeys(c.lower() for c in p.categories)),
        "slugified_categories": lambda: "/".join(dict.fromkeys(slugify(c) for c in p.categories)),
        "year": lambda: f"{d.year:04d}", "month": lambda: f"{d.month:02d}",
        "day": lambda: f"{d.day:02d}", "hour": lambda: f"{d.hour:02d}",
        "minute": lambda: f"{d.minute:02d}", "second": lambda: f"{d.second:02d}",
        "i_day": lambda: str(d.day), "i_month": lambda: str(d.month),
        "short_month": lambda: _MONTHS[d.month - 1][:3], "long_month": lambda: _MONTHS[d.month - 1],
        "short_year": lambda: f"{d.year % 100:02d}", "w_year": lambda: str(iso[0]),
        "week": lambda: f"{iso[1]:02d}", "w_day": lambda: str(iso[2]),
        "short_day": lambda: _DAYS[d.weekday()][:3], "long_day": lambda: _DAYS[d.weekday()],
        "y_day": lambda: f"{d.timetuple().tm_yday:03d}",
        "output_ext": lambda: p.output_ext,
        "path": lambda: _cleaned_relative_path(p.rel),
    }


PLACEHOLDERS = frozenset(_placeholders(UrlParts("x.md", "x", (), dt.datetime(2000, 1, 1))))


def _cleaned_relative_path(rel: str) -> str:
    stem = posixpath.splitext(rel)[0]
    return re.sub(r"\.*$", "", stem.replace("_posts", "", 1))


def unknown_placeholders(pattern: str) -> list[str]:
    """Placeholders of `pattern` Jekyll does not know (its build would stop)."""
    bad = []
    for m in PLACEHOLDER.finditer(pattern):
        name = m.group(1)
        if name not in PLACEHOLDERS and name.rstrip("_") not in PLACEHOLDERS:
            bad.append(name)
    return bad


def post_url(pattern: str, parts: UrlParts) -> str:
    """Document#url: the pattern's placeholders replaced (values escaped), sanitised."""
    values = _placeholders(parts)

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        # URL#generate_url_from_drop: ':month_' may be ':month' followed by '_'.
        for key in ([name, name[:-1]] if name.endswith("_") else [name]):
            if key in values:
                return escape_path(values[key]()) + m.group(0)[len(key) + 1:]
        raise PermalinkError(f"unknown placeholder ':{name}' in permalink {pattern!r}")

    return sanitize_url(PLACEHOLDER.sub(replace, pattern))


def post_id(url: str, slug: str) -> str:
    """Document#id: the folder of the post's URL joined with its slug."""
    # Ruby's File.dirname ignores a trailing slash: /2022/title/ → /2022.
    folder = posixpath.dirname(url.rstrip("/") or "/")
    return folder.rstrip("/") + "/" + slug.lstrip("/")


# -- which files Jekyll reads (Reader, EntryFilter) --------------------------------------
# Jekyll's Configuration::DEFAULT_EXCLUDES, added to every site's `exclude:`.
DEFAULT_EXCLUDES = (".sass-cache", ".jekyll-cache", "gemfiles", "Gemfile", "Gemfile.lock",
                    "node_modules", "vendor/bundle/", "vendor/cache/", "vendor/gems/",
                    "vendor/ruby/")
_SPECIAL = tuple("._#~")


@dataclass(frozen=True)
class EntryFilter:
    """Jekyll's EntryFilter over the paths of a site's posts: `exclude:` (globs
    and path prefixes below the site source, as File.fnmatch? without flags and
    String#start_with? match them), `include:` (which rescues an entry the
    filter would drop, but never the files of a folder it did not enter), and
    names starting with `.`, `_`, `#`, `~`, which Jekyll skips. `prefix` is
    where posts_dir lies below the source (collections_dir)."""
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    include: tuple[str, ...] = (".htaccess",)
    prefix: str = ""

    def _matcher(self, patterns: tuple[str, ...]) -> tuple[re.Pattern[str], tuple[str, ...]]:
        # EntryFilter#glob_include?, both sides joined to the source folder:
        # File.fnmatch? without flags (one regex for all) or String#start_with?.
        pats = tuple("/" + p.lstrip("/") for p in patterns)
        glob = "|".join(f"(?:{fnmatch.translate(p)})" for p in pats) or r"(?!)"
        return re.compile(glob, re.S), pats

    @functools.cached_property
    def _excluded(self) -> tuple[re.Pattern[str], tuple[str, ...]]:
        return self._matcher(tuple(p for p in self.exclude if p not in self.include))

    @functools.cached_property
    def _included(self) -> tuple[re.Pattern[str], tuple[str, ...]]:
        return self._matcher(self.include)

    @staticmethod
    def _matches(matcher: tuple[re.Pattern[str], tuple[str, ...]], path: str,
                 is_dir: bool) -> bool:
        glob, pats = matcher
        full = "/" + path.strip("/")
        return glob.match(full) is not None or full.startswith(pats) \
            or (is_dir and full + "/" in pats)

    def _rejects(self, entry: str, base: str, is_dir: bool) -> bool:
        """EntryFilter#filter for one entry of the folder `base` (below the source)."""
        if entry.endswith("."):
            return True
        name = entry.rsplit("/", 1)[-1]
        included = self._matches(self._included, entry, is_dir) or \
            self._matches(self._included, name, is_dir)
        if not included and self._matches(self._excluded, posixpath.join(base, entry), is_dir):
            return True
        if included:
            return False
        return entry.startswith(_SPECIAL) or name.startswith(_SPECIAL) or entry.endswith("~")

    @functools.cached_property
    def _folders(self) -> dict[str, bool]:
        return {}   # folder below the source → whether Jekyll skips it (one answer per folder)

    def _folder_rejected(self, parts: list[str]) -> bool:
        """Whether Reader#read_directories, walking down to the folder `parts`,
        leaves out one of them (each filtered as an entry of its parent)."""
        key = "/".join(parts)
        known = self._folders.get(key)
        if known is None:
            known = bool(parts) and (self._folder_rejected(parts[:-1])
                                     or self._rejects(parts[-1], "/".join(parts[:-1]), True))
            if len(self._folders) < 100_000:
                self._folders[key] = known
        return known

    def rejects(self, rel: str) -> bool:
        """Whether Jekyll leaves out the post file at `rel` (below posts_dir):
        each folder on the way to its `_posts` folder, as Reader#read_directories
        filters them, then the file, as Reader#get_entries filters the files of
        that `_posts` folder (its path below it, and its name)."""
        parts = [p for p in self.prefix.strip("/").split("/") if p] + rel.split("/")
        if "_posts" not in parts[:-1]:
            return False
        at = parts.index("_posts")
        return self._folder_rejected(parts[:at]) or \
            self._rejects("/".join(parts[at + 1:]), "/".join(parts[:at + 1]), False)

    def rejects_folder(self, rel: str) -> bool:
        """Whether no post under the folder `rel` (below posts_dir) can be read:
        a folder on the way to a `_posts` folder that Jekyll does not enter."""
        parts = [p for p in self.prefix.strip("/").split("/") if p] + rel.split("/")
        return self._folder_rejected(parts[:parts.index("_posts")] if "_posts" in parts
                                     else parts)
