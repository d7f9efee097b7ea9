"""Building fixture sites with the real Jekyll (Debian's `jekyll` + `ruby-jekyll-feed`,
installed by scripts/test-deps) and reading jekyll-feed's files back."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree
from support import FIXTURES

ATOM = "{http://www.w3.org/2005/Atom}"
JEKYLL_SITE = FIXTURES / "jekyll" / "site"
# jekyll-feed runs titles through `smartify`: typographic quotes, dashes and
# ellipses (an allowed difference, README "Switching from jekyll-feed").
SMART = {"‘": "'", "’": "'", "“": '"', "”": '"', "–": "--", "—": "---", "…": "..."}


def jekyll_binary() -> str:
    path = shutil.which("jekyll")
    if path is None:
        pytest.fail("jekyll is not installed: run `bash scripts/test-deps` (Debian packages "
                    "jekyll and ruby-jekyll-feed)")
    return path


def copy_site(dest: Path, *, permalink: str | None = None, baseurl: str | None = None) -> Path:
    """The fixture site copied to `dest`, with `permalink:` / `baseurl:` rewritten."""
    shutil.copytree(JEKYLL_SITE, dest)
    config = dest / "_config.yml"
    text = config.read_text(encoding="utf-8")
    if permalink is not None:
        text = re.sub(r"(?m)^permalink: .*$", f"permalink: {permalink}", text)
    if baseurl is not None:
        text = re.sub(r"(?m)^baseurl: .*$", f"baseurl: {baseurl!r}", text)
    config.write_text(text, encoding="utf-8")
    return config


def build(site: Path, out: Path) -> Path:
    """`jekyll build` of `site` into `out` (offline: Debian's gems, no Gemfile)."""
    proc = subprocess.run([jekyll_binary(), "build", "--source", str(site), "--destination",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=300,
                          cwd=site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@dataclass(frozen=True)
class JEntry:
    id: str
    link: str
    title: str
    published: dt.datetime
    updated: dt.datetime
    terms: tuple[str, ...]


def jekyll_feeds(out: Path) -> dict[str, Path]:
    """URL path (below baseurl) → file, for every Atom file jekyll-feed wrote."""
    feeds = {}
    for path in sorted(out.rglob("*.xml")):
        root = etree.parse(str(path)).getroot()
        if root.tag == f"{ATOM}feed":
            feeds["/" + path.relative_to(out).as_posix()] = path
    return feeds


def atom_entries(body: bytes, *, html_titles: bool) -> list[JEntry]:
    """The entries of an Atom document. jekyll-feed's titles are type="html"
    (their text is HTML to decode); feedsvc's are plain text."""
    root = etree.fromstring(body)
    out = []
    for e in root.iter(f"{ATOM}entry"):
        title = e.findtext(f"{ATOM}title") or ""
        if html_titles:
            title = html.unescape(title)
        out.append(JEntry(
            id=e.findtext(f"{ATOM}id") or "",
            link=e.find(f"{ATOM}link").get("href"),  # type: ignore[union-attr]
            title=desmartify(title),
            published=dt.datetime.fromisoformat(e.findtext(f"{ATOM}published") or ""),
            updated=dt.datetime.fromisoformat(e.findtext(f"{ATOM}updated") or ""),
            terms=tuple(dict.fromkeys(c.get("term") or "" for c in e.iter(f"{ATOM}category"))),
        ))
    return out


def desmartify(text: str) -> str:
    return "".join(SMART.get(c, c) for c in text)
