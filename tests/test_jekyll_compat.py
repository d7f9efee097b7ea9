"""A Jekyll site switching from jekyll-feed: the fixture site (tests/fixtures/jekyll/site,
one post per case) is built by the real Jekyll 4.3 + jekyll-feed, and served by
`feedsvc serve --config <site>/_config.yml`. Every entry of every file
jekyll-feed wrote must come back from feedsvc at the same URL with the same id,
link, title text, published and updated instants and categories, in every
permalink style, with and without baseurl. The only differences are the ones
listed in README "Switching from jekyll-feed" (ALLOWED below)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml
from jekyll_support import ATOM, JEntry, atom_entries, build, copy_site, jekyll_feeds
from lxml import etree
from support import Server, free_port, running, wait_for
from test_feedcheck import FEEDCHECK

ZONE = ZoneInfo("America/New_York")


def _utc_wall_time_in_site_zone(jekyll: dt.datetime) -> dt.datetime:
    # Jekyll's YAML (Psych) reads an unquoted `2022-03-21 12:00:00` as UTC;
    # feedsvc reads it as wall time in the site's zone (DESIGN.md).
    wall = jekyll.astimezone(dt.UTC).replace(tzinfo=None)
    return wall.replace(tzinfo=ZONE, fold=0).astimezone(dt.UTC)


def _first_of_a_repeated_hour(jekyll: dt.datetime) -> dt.datetime:
    # 01:30 on 2022-11-06 happens twice in New York: Ruby takes the second
    # (EST), feedsvc the first (EDT, fold=0, DESIGN.md).
    wall = jekyll.astimezone(ZONE).replace(tzinfo=None)
    # In UTC: PEP 495 makes a time in a fold unequal to any time in another zone.
    return wall.replace(tzinfo=ZONE, fold=0).astimezone(dt.UTC)


# The allowed differences in an entry's instants, by the post's slug (the end of its id).
ALLOWED: dict[str, Callable[[dt.datetime], dt.datetime]] = {
    "unquoted-naive-time": _utc_wall_time_in_site_zone,
    "dst-fold-naive-date": _first_of_a_repeated_hour,
}
# (permalink setting, baseurl): every built-in style, a custom pattern without
# :output_ext, and a site without baseurl.
VARIANTS = [("date", None), ("pretty", None), ("ordinal", None), ("weekdate", None),
            ("none", ""), ("/:slugified_categories/:short_year/:i_month/:title", None)]




class Site:
    """A fixture site built by Jekyll and served by feedsvc."""

    def __init__(self, root: Path, server: Server, out: Path) -> None:
        self.root, self.server, self.out = root, server, out
        self.feeds = jekyll_feeds(out)


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-baseurl{v[1]!r}")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    permalink, baseurl = request.param
    tmp = tmp_path_factory.mktemp("jekyll")
    config = copy_site(tmp / "site", permalink=permalink, baseurl=baseurl)
    out = build(config.parent, tmp / "_site")
    with running(config) as server:
        yield Site(config.parent, server, out)


def served(site: Site, path: str) -> requests.Response:
    resp = site.server.get(path)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
    return resp


def test_jekyll_feed_wrote_the_feeds_the_cases_need(site: Site) -> None:
    # A guard on the fixture itself: every kind of jekyll-feed URL is there.
    assert {"/feed.xml", "/feed/world.xml", "/feed/tech.xml", "/feed/local.xml",
            "/feed/by_tag/news.xml", "/feed/by_tag/qa.xml"} <= set(site.feeds)
    ids = [e.id for e in atom_entries(site.feeds["/feed.xml"].read_bytes(), html_titles=True)]
    # The 29 post files Jekyll reads, less the future, the unpublished and the draft
    # (and none of the three posts its `exclude:` and `_hidden/` leave out).
    assert len(ids) == 26 and len(set(ids)) == 26
    assert not [i for i in ids if i.rsplit("/", 1)[1] in (
        "in-excluded-folder", "excluded-by-glob", "special-folder", "draft-flag",
        "prefix-of-an-excluded-name")]


def test_every_entry_of_every_jekyll_feed_matches(site: Site) -> None:
    for path, file in site.feeds.items():
        resp = served(site, path)
        assert resp.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
        theirs = atom_entries(file.read_bytes(), html_titles=True)
        ours = atom_entries(resp.content, html_titles=False)
        assert [e.id for e in ours] == [e.id for e in theirs], path
        for mine, their in zip(ours, theirs, strict=True):
            compare(mine, their, path)


def compare(mine: JEntry, their: JEntry, path: str) -> None:
    where = f"{path} {their.id}"
    assert mine.link == their.link, where
    assert mine.title == their.title, where
    assert mine.terms == their.terms, where
    allowed = next((f for slug, f in ALLOWED.items() if their.id.endswith("/" + slug)), None)
    for name in ("published", "updated"):
        theirs = getattr(their, name)
        expected = allowed(theirs) if allowed else theirs
        assert getattr(mine, name) == expected, f"{where} {name}"


def test_content_or_excerpt_only_as_jekyll_feed(site: Site) -> None:
    """jekyll-feed leaves out <content> where a post's `feed: {excerpt_only: true}`
    says so; feedsvc too, in every format."""
    def has_content(body: bytes) -> dict[str, bool]:
        root = etree.fromstring(body)
        return {e.findtext(f"{ATOM}id") or "": e.find(f"{ATOM}content") is not None
                for e in root.iter(f"{ATOM}entry")}

    theirs = has_content(site.feeds["/feed.xml"].read_bytes())
    assert has_content(served(site, "/feed.xml").content) == theirs
    short = [i for i, has in theirs.items() if not has]
    assert [i.rsplit("/", 1)[1] for i in short] == ["excerpt-only-post"]
    rss = {i.findtext("guid"): i for i in etree.fromstring(
        served(site, "/feeds/all.rss").content).iter("item")}
    content = "{http://purl.org/rss/1.0/modules/content/}encoded"
    assert rss[short[0]].find(content) is None and rss[short[0]].findtext("description")
    items = {i["id"]: i for i in json.loads(served(site, "/feeds/all.json").content)["items"]}
    assert "content_html" not in items[short[0]] and items[short[0]]["summary"]
    assert all("content_html" in i for k, i in items.items() if k != short[0])


def test_index_page_links_jekyll_feed_urls(site: Site) -> None:
    """`/` names jekyll-feed's URLs, its /feed.xml first in <head>, as
    jekyll-feed's `{% feed_meta %}` does."""
    page = etree.HTML(served(site, "/").content)
    alternates = [(link.get("type"), link.get("href"))
                  for link in page.iter("link") if link.get("rel") == "alternate"]
    feeds_url = "https://news.example.org" + (
        "/blog" if "baseurl: /blog" in (site.root / "_config.yml").read_text() else "")
    assert alternates[0] == ("application/atom+xml", feeds_url + "/feed.xml")
    for cat in CATEGORIES:
        assert ("application/atom+xml", f"{feeds_url}/feed/{cat}.xml") in alternates
    listed = {a.get("href") for a in page.iter("a")}
    assert {feeds_url + p for p in site.feeds if "/by_tag/" not in p} <= listed
    # Each of those URLs answers with the feed it names.
    for _, href in alternates:
        assert served(site, href.removeprefix(feeds_url)).content


def test_the_same_urls_below_baseurl(site: Site) -> None:
    """A proxy may pass /blog/feed.xml on unchanged: the same document answers."""
    prefix = "/blog" if (site.root / "_config.yml").read_text().count("baseurl: /blog") else ""
    for path in [*site.feeds, "/feeds/all.rss", "/feeds/world.json", "/tags/qa.atom"]:
        assert served(site, prefix + path).content == served(site, path).content


def test_rss_and_json_carry_the_same_ids(site: Site) -> None:
    ours_of = {"/feed.xml": "/feeds/all"}
    ours_of |= {f"/feed/{c}.xml": f"/feeds/{c}" for c in ("world", "tech", "local")}
    ours_of |= {f"/feed/by_tag/{t}.xml": f"/tags/{t}" for t in ("news", "qa")}
    for path, base in ours_of.items():
        ids = [e.id for e in atom_entries(site.feeds[path].read_bytes(), html_titles=True)]
        rss = etree.fromstring(served(site, base + ".rss").content)
        guids = list(rss.iter("guid"))
        assert [g.text for g in guids] == ids, base
        assert {g.get("isPermaLink") for g in guids} == {"false"}
        items = json.loads(served(site, base + ".json").content)["items"]
        assert [i["id"] for i in items] == ids, base
        atom = etree.fromstring(served(site, base + ".atom").content)
        assert [e.findtext(f"{ATOM}id") for e in atom.iter(f"{ATOM}entry")] == ids


def test_http_behaviour_on_jekyll_urls(site: Site) -> None:
    first = served(site, "/feed.xml")
    etag = first.headers["ETag"]
    again = site.server.get("/feed.xml", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag
    gz = site.server.get("/feed.xml", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip" and gz.content == first.content
    page = site.server.get("/feed.xml", headers={"Sec-Fetch-Dest": "document"})
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"].startswith("private")
    assert site.server.get("/feed/nope.xml").status_code == 404
    # jekyll-feed writes no tag feed for a tag with a space or outside A-Z, 0-9, _.
    assert site.server.get("/feed/by_tag/中文.xml").status_code == 404


def test_links_go_to_the_pages_jekyll_wrote(site: Site) -> None:
    """Zero broken links: every entry link names a file of the built site."""
    from urllib.parse import unquote, urlsplit

    base = (site.root / "_config.yml").read_text()
    prefix = "/blog" if "baseurl: /blog" in base else ""
    for entry in atom_entries(served(site, "/feed.xml").content, html_titles=False):
        path = unquote(urlsplit(entry.link).path)
        assert path.startswith(prefix + "/"), entry.link
        rel = path[len(prefix):].lstrip("/")
        target = site.out / rel
        candidates = [target / "index.html"] if entry.link.endswith("/") else [
            target, target.with_name(target.name + ".html")]
        assert any(c.is_file() for c in candidates), (entry.link, candidates)


# Every category and tag of the fixture site (the guard below keeps this list true).
CATEGORIES = ("world", "tech", "local")
TAGS = ("news", "qa", "solo tag", "昆明", "Two Words", "中文")


def _fixture_tags(root: Path) -> set[str]:
    """Every tag the fixture's posts carry (`tags:` list or string, singular `tag:`)."""
    found: set[str] = set()
    for path in root.rglob("_posts/*"):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---", 2)[1]) or {}
        if front.get("published") is False:
            continue
        if "tag" in front:
            found.add(str(front["tag"]))
        tags = front.get("tags") or []
        found.update(map(str, tags.split() if isinstance(tags, str) else tags))
    return found


def test_the_feedcheck_lists_name_every_feed(site: Site) -> None:
    assert _fixture_tags(site.root) == set(TAGS)
    # jekyll-feed's per-category feeds are exactly the configured categories.
    assert {p for p in site.feeds if p.startswith("/feed/") and "/by_tag/" not in p} == {
        f"/feed/{c}.xml" for c in CATEGORIES}


# Six readers per file, ~40 files per permalink style: minutes on a loaded machine.
@pytest.mark.timeout(900)
def test_every_feed_passes_feedcheck(site: Site, tmp_path: Path) -> None:
    """Every document of the site, in every permalink style (the styles change
    ids and links, which is what readers compare): jekyll-feed's URLs, and RSS,
    Atom and JSON of the site-wide feed, of each category and of each tag,
    with author, media elements and logo, through feedcheck, with the true
    instants as --expect."""
    if not FEEDCHECK.is_file():
        pytest.fail(f"feedcheck not found at {FEEDCHECK} (scripts/test-deps sets it up)")
    truth = {e.id: e for e in atom_entries(site.feeds["/feed.xml"].read_bytes(),
                                           html_titles=True)}
    paths = list(site.feeds)
    bases = ["/feeds/all", *(f"/feeds/{c}" for c in CATEGORIES),
             *(f"/tags/{quote(t)}" for t in TAGS)]
    for base in bases:
        paths += [base + ".rss", base + ".atom", base + ".json"]
    groups: dict[tuple[str, ...], list[Path]] = {}
    for n, path in enumerate(paths):
        body = served(site, path).content
        suffix = path.rsplit(".", 1)[1]
        file = tmp_path / f"feed-{n}.{suffix}"
        file.write_bytes(body)
        ids = _ids(body, suffix)
        assert ids, f"{path}: no entries (every feed of the fixture has some)"
        atom = suffix in ("atom", "xml")
        wanted = []
        for i in ids:
            e = truth[i]
            allowed = next((f for s, f in ALLOWED.items() if i.endswith("/" + s)), None)
            date = allowed(e.published) if allowed else e.published
            # feed-extractor reads an Atom entry's <updated> as its only date.
            if not (atom and e.updated != e.published):
                wanted.append(json.dumps({"id": i, "date": date.isoformat()}, sort_keys=True))
        groups.setdefault(tuple(wanted), []).append(file)
    # One feedcheck call per set of expectations (feedcheck fails a file that
    # lacks an expected entry), every file that shares it at once.
    for n, (wanted, files) in enumerate(groups.items()):
        expect = tmp_path / f"expect-{n}.json"
        expect.write_text(json.dumps({"entries": [json.loads(w) for w in wanted]}))
        proc = subprocess.run([str(FEEDCHECK), "--expect", str(expect), *map(str, files)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{len(files)} file(s), {len(files)} passed, 0 failed" in proc.stdout
    assert sum(len(f) for f in groups.values()) == len(paths)


def _ids(body: bytes, suffix: str) -> list[str]:
    if suffix == "json":
        return [i["id"] for i in json.loads(body)["items"]]
    root = etree.fromstring(body)
    if suffix == "rss":
        return [str(g.text) for g in root.iter("guid")]
    return [str(e.findtext(f"{ATOM}id")) for e in root.iter(f"{ATOM}entry")]


def test_check_reports_the_cases(site: Site) -> None:
    """`feedsvc check <site folder>`: the uncategorised and the mistyped posts by
    file (warnings: exit 0), true counts."""
    proc = subprocess.run([sys.executable, "-m", "feedsvc", "check", "--config", str(site.root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    posts = site.root / "_posts"
    assert f"{posts / '2022-04-11-mistyped-category.md'}: warning: category 'tehc' has no " \
           "feed (did you mean 'tech'?)" in proc.stdout
    for name in ("2022-03-23-uncategorised.md", "2022-03-28-author-key.md"):
        assert f"{posts / name}: warning: no category: only in the site-wide feed" in lines
    assert lines[-1].endswith("ok; 29 post files, 26 in feeds, 1 future, 2 unpublished, "
                              "0 problem(s), 3 warning(s)"), lines[-1]
    # What Jekyll does not read is no post file of the site's either.
    for name in ("in-excluded-folder", "excluded-by-glob", "special-folder", "oldies"):
        assert name not in proc.stdout


def test_author_image_and_logo_forms(site: Site) -> None:
    """Each author and image form of the fixture in all three formats, with
    jekyll-feed's own values where it writes them."""
    media = "{http://search.yahoo.com/mrss/}"
    theirs = etree.fromstring(site.feeds["/feed.xml"].read_bytes())
    ours = etree.fromstring(served(site, "/feed.xml").content)
    assert ours.findtext(f"{ATOM}logo", "").endswith("/assets/logo.png")

    def by_slug(root: etree._Element) -> dict[str, etree._Element]:
        return {(e.findtext(f"{ATOM}id") or "").rsplit("/", 1)[1]: e
                for e in root.iter(f"{ATOM}entry")}

    mine, their = by_slug(ours), by_slug(theirs)
    for slug in ("author-key", "author-mapping", "author-string", "authors-list"):
        for part in ("name", "email", "uri"):
            assert mine[slug].findtext(f"{ATOM}author/{ATOM}{part}") == \
                their[slug].findtext(f"{ATOM}author/{ATOM}{part}"), (slug, part)
    for slug in ("author-key", "author-mapping", "author-string"):
        for el in ("thumbnail", "content"):
            assert mine[slug].find(f"{media}{el}").get("url") == \
                their[slug].find(f"{media}{el}").get("url"), (slug, el)
    # No image: in the front matter, so the body's first <img>, made absolute.
    first = mine["authors-list"].find(f"{media}thumbnail").get("url")
    assert first.startswith("https://news.example.org/") and first.endswith("/first-image.png")
    rss = {(i.findtext("guid") or "").rsplit("/", 1)[1]: i
           for i in etree.fromstring(served(site, "/feeds/all.rss").content).iter("item")}
    dc = "{http://purl.org/dc/elements/1.1/}"
    assert rss["author-key"].findtext(f"{dc}creator") == "Jane Doe"
    assert rss["author-mapping"].find(f"{media}content").get("medium") == "image"
    items = {i["id"].rsplit("/", 1)[1]: i
             for i in json.loads(served(site, "/feeds/all.json").content)["items"]}
    assert items["author-mapping"]["authors"] == [
        {"name": "Max Mapping", "url": "https://max.example.org/"}]
    assert items["author-string"]["image"] == "https://cdn.example.net/absolute.png"


def test_the_readme_command_serves_a_jekyll_site(tmp_path: Path) -> None:
    """README "Switching from jekyll-feed" step 2, as written: run in the folder
    above the site, it serves jekyll-feed's /feed.xml with every entry."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    command = re.search(r"`(feedsvc serve --config site/ --port 8000)`", readme)
    assert command, "README no longer shows the one command that serves a Jekyll site"
    copy_site(tmp_path / "site")
    port = free_port()
    args = command.group(1).replace("8000", str(port)).split()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def feed() -> requests.Response | None:
            assert proc.poll() is None, "feedsvc serve exited"
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/feed.xml", timeout=10)
            except requests.RequestException:   # not listening yet, or busy starting
                return None
            return resp if resp.status_code == 200 else None

        resp = wait_for(feed, timeout=90, interval=0.3)
        assert len(atom_entries(resp.content, html_titles=False)) == 26
    finally:
        proc.terminate()
        proc.wait(20)
