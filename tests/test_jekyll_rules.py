"""Jekyll's URL rules (feedsvc/jekyll.py) as tables of awkward inputs, with the
values real Jekyll 4.3 / Addressable 2.8 give (run in Ruby on this machine:
`Addressable::URI.parse(u).normalize.to_s`, `Jekyll::URL.escape_path`,
`Jekyll::Utils.slugify`), and a Jekyll site's _config.yml as feedsvc's config.
tests/test_jekyll_compat.py checks the whole against `jekyll build`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from support import running, wait_for

from feedsvc import jekyll
from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.errors import ConfigError
from feedsvc.export import export
from feedsvc.index import Index


@pytest.mark.parametrize(("url", "normalised"), [
    ("https://example.org/blog/2022/01/02/Hello World #1 [x] %20 end",
     "https://example.org/blog/2022/01/02/Hello%20World#1%20%5Bx%5D%20%20%20end"),
    ("https://e.org/a/%2E%2E/b/%7e/x%2fy/ü 中文/a..b/./c",
     "https://e.org/b/~/x%2Fy/%C3%BC%20%E4%B8%AD%E6%96%87/a..b/c"),
    ("https://e.org/a b ", "https://e.org/a%20b"),
    ("https://e.org/a /b", "https://e.org/a%20/b"),
    ("https://e.org/x%41%25%3F%23y", "https://e.org/xA%25%3F%23y"),
    ("https://e.org/x\"<>\\^`{|}y", "https://e.org/x%22%3C%3E%5C%5E%60%7B%7C%7Dy"),
    ("https://e.org/x%zz", "https://e.org/x%25zz"),
    ("https://e.org/x/..", "https://e.org/"),
    ("https://E.ORG:443/x", "https://e.org/x"),
    ("https://e.org/%21%40%3A%2B%3D%26%24%2C%3B%27%28%29%2A/%2F",
     "https://e.org/!@:+=&$,;'()*/%2F"),
    ("https://e.org/a#b#c%23 [x]?y/z", "https://e.org/a#b%23c%23%20%5Bx%5D?y/z"),
    ("https://e.org/a\tb\t", "https://e.org/a%09b"),
    ("https://e.org/a%2e%2E/b", "https://e.org/a../b"),
    ("https://e.org", "https://e.org/"),
])
def test_addressable_normalisation(url: str, normalised: str) -> None:
    assert jekyll.normalize(url) == normalised


@pytest.mark.parametrize(("value", "escaped"), [
    ("/a b/中/%20/[x]#y?z", "/a%20b/%E4%B8%AD/%2520/%5Bx%5D%23y?z"),
    ("plain-2022/x.html", "plain-2022/x.html"),
    ("extra cat/world", "extra%20cat/world"),
])
def test_escape_path(value: str, escaped: str) -> None:
    assert jekyll.escape_path(value) == escaped


@pytest.mark.parametrize(("text", "mode", "cased", "slug"), [
    ("Hello World #1 [x] %20 end", "pretty", True, "Hello-World-1-x-20-end"),
    ("The _config.yml file", "default", False, "the-config-yml-file"),
    ("The _config.yml file", "pretty", False, "the-_config.yml-file"),
    ("Custom Slug!", "pretty", True, "Custom-Slug!"),
    ("Custom Slug!", "default", False, "custom-slug"),
    ("昆明 新闻", "default", False, "昆明-新闻"),
    ("--x--", "default", False, "x"),
])
def test_slugify(text: str, mode: str, cased: bool, slug: str) -> None:
    assert jekyll.slugify(text, mode, cased) == slug


def test_sanitize_url_as_jekyll() -> None:
    assert jekyll.sanitize_url("/news/../archive/./2022/dots.html") == "/news/archive/2022/dots.html"
    assert jekyll.sanitize_url("a//b") == "/a/b"


def test_post_id_is_the_url_folder_and_the_slug() -> None:
    assert jekyll.post_id("/2022/03/21/x.html", "x") == "/2022/03/21/x"
    assert jekyll.post_id("/2022/pretty/", "pretty") == "/2022/pretty"   # Ruby's dirname
    assert jekyll.post_id("/custom/1.html", "my-slug") == "/custom/my-slug"
    assert jekyll.post_id("/x", "x") == "/x"


def test_every_placeholder() -> None:
    parts = jekyll.UrlParts("_posts/2022-03-25-every.md", "Custom Slug!", ("tech", "Big Data"),
                            dt.datetime(2022, 3, 25, 14, 5, 9))
    pattern = ("/:collection/:year/:short_year/:month/:i_month/:day/:i_day/:hour-:minute-:second"
               "/:y_day/:w_year-W:week-:w_day/:short_day/:long_day/:short_month/:long_month"
               "/:slugified_categories/:categories/:slug/:name/:title/:path:output_ext")
    assert jekyll.post_url(pattern, parts) == (
        "/posts/2022/22/03/3/25/25/14-05-09/084/2022-W12-5/Fri/Friday/Mar/March/tech/big-data"
        "/tech/big%20data/custom-slug/2022-03-25-every/Custom-Slug!/2022-03-25-every.html")


def test_month_followed_by_an_underscore() -> None:
    parts = jekyll.UrlParts("_posts/2022-03-25-x.md", "x", (), dt.datetime(2022, 3, 25))
    assert jekyll.post_url("/:month_:day/:title", parts) == "/03_25/x"


@pytest.mark.parametrize("name", list(jekyll.STYLES))
def test_styles(name: str) -> None:
    assert jekyll.style(name) == jekyll.STYLES[name]
    assert not jekyll.unknown_placeholders(jekyll.STYLES[name])


def test_unknown_placeholder() -> None:
    assert jekyll.unknown_placeholders("/:year/:titel/") == ["titel"]
    parts = jekyll.UrlParts("_posts/2022-03-25-x.md", "x", (), dt.datetime(2022, 3, 25))
    with pytest.raises(jekyll.PermalinkError, match="':titel'"):
        jekyll.post_url("/:titel", parts)


# -- _config.yml ------------------------------------------------------------------
def site(tmp_path: Path, text: str) -> Path:
    (tmp_path / "_posts").mkdir(parents=True, exist_ok=True)
    (tmp_path / "_config.yml").write_text(text, encoding="utf-8")
    return tmp_path


BASE = "title: T\nurl: https://e.org\n"


def test_a_site_folder_is_a_config(tmp_path: Path) -> None:
    config = load_config(site(tmp_path, BASE + "baseurl: /b/\ntheme: minima\nfoo: {bar: 1}\n"
                                              "feed: {categories: [a], posts_limit: 5}\n"))
    assert config.path == tmp_path / "_config.yml"
    assert config.baseurl == "/b" and config.feeds_url == "https://e.org/b"
    assert config.limit == 5 and list(config.categories) == ["a"]
    assert config.categories["a"].title == "T | A"
    assert config.jekyll_feed is not None and config.jekyll_feed.path == "/feed.xml"
    assert config.permalink == jekyll.STYLES["date"]


def test_unknown_keys_inside_feedsvc_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"feedsvc\.max_agee: unknown key \(did you mean 'max_age'\?\)"):
        load_config(site(tmp_path, BASE + "feedsvc:\n  max_agee: 5\n"))


def test_feedsvc_section_adds_and_describes_categories(tmp_path: Path) -> None:
    config = load_config(site(tmp_path, BASE + "feed: {categories: [a]}\nfeedsvc:\n  categories:\n"
                                              "    a: {description: About A}\n    b: {title: Bee}\n"
                                              "  jekyll_feed: false\n"))
    assert config.categories["a"].title == "T | A"
    assert config.categories["a"].description == "About A"
    assert config.categories["b"].title == "Bee"
    assert config.jekyll_feed is None


def test_title_and_url_are_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="url: is required"):
        load_config(site(tmp_path, "title: T\n"))


def test_an_unknown_placeholder_in_the_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown placeholder ':titel' \\(did you mean ':title'\\?\\)"):
        load_config(site(tmp_path, BASE + "permalink: /:year/:titel/\n"))


def test_served_from_the_site_folder_and_authors_yml_reloads(tmp_path: Path) -> None:
    root = site(tmp_path / "site", BASE + "feedsvc: {state_dir: .feedsvc}\n")
    (root / "_data").mkdir()
    (root / "_data" / "authors.yml").write_text("jdoe: {name: Jane Doe}\n")
    (root / "_posts" / "2022-03-21-a.md").write_text("---\ntitle: A\nauthor: jdoe\n---\nx\n")

    def author() -> str:
        return str(server.get("/feed.xml").text)

    with running(root / "_config.yml") as server:
        assert "<name>Jane Doe</name>" in author()
        (root / "_data" / "authors.yml").write_text("jdoe: {name: Jane Q. Doe}\n")
        wait_for(lambda: "<name>Jane Q. Doe</name>" in author(), timeout=20)


def test_feed_path_and_tag_settings(tmp_path: Path) -> None:
    root = site(tmp_path / "site", BASE + "feed:\n  path: atom.xml\n  categories: [news]\n"
                "  tags: {only: [kept, dropped], except: [dropped], path: /by/}\n"
                "feedsvc: {state_dir: .feedsvc}\n")
    (root / "_posts" / "2022-03-21-a.md").write_text(
        "---\ntitle: A\ncategories: news\ntags: [kept, dropped, other]\n---\nx\n")
    with create_app(load_config(root), watch=False).test_client() as client:
        for path in ("/atom.xml", "/feed/news.xml", "/by/kept.xml"):
            resp = client.get(path)
            assert resp.status_code == 200 and resp.mimetype == "application/atom+xml", path
        assert b"<id>https://e.org/atom.xml</id>" in client.get("/atom.xml").data
        for path in ("/feed.xml", "/by/dropped.xml", "/by/other.xml", "/feed/by_tag/kept.xml"):
            assert client.get(path).status_code == 404, path


def test_the_sites_output_and_vendor_folders_hold_no_posts(tmp_path: Path) -> None:
    root = site(tmp_path / "site", BASE)
    post = "---\ntitle: A\n---\nx\n"
    (root / "_posts" / "2022-03-21-a.md").write_text(post)
    for folder in ("_site/_posts", "vendor/bundle/gems/theme/_posts", "node_modules/x/_posts"):
        (root / folder).mkdir(parents=True)
        (root / folder / "2022-03-21-b.md").write_text(post)
    index = Index(load_config(root))
    index.scan()
    assert list(index.posts) == ["_posts/2022-03-21-a.md"]


def test_build_writes_jekyll_feeds_files_as_served(tmp_path: Path) -> None:
    root = site(tmp_path / "site", BASE + "feed: {categories: [news], tags: true}\n"
                "feedsvc: {state_dir: .feedsvc}\n")
    (root / "_posts" / "2022-03-21-a.md").write_text(
        "---\ntitle: A\ncategories: news\ntags: [t1]\n---\nx\n")
    out = tmp_path / "out"
    export(load_config(root), out)
    with create_app(load_config(root), watch=False).test_client() as client:
        for path in ("/feed.xml", "/feed/news.xml", "/feed/by_tag/t1.xml", "/feeds/all.atom"):
            assert (out / path.lstrip("/")).read_bytes() == client.get(path).data, path


# Ruby's Time.parse on this machine (`ruby -rtime -e 'p Time.parse("69-1-2").year'`),
# which Jekyll applies to the date of a post's file name.
@pytest.mark.parametrize(("name", "year"), [
    ("69-1-2-x.md", 1969), ("99-12-31-x.md", 1999), ("00-1-1-x.md", 2000),
    ("22-3-5-x.md", 2022), ("68-1-1-x.md", 2068), ("022-3-5-x.md", 22), ("122-3-5-x.md", 122),
    ("2022-3-5-x.md", 2022),
])
def test_file_name_years_as_ruby_reads_them(name: str, year: int) -> None:
    from feedsvc import dates

    day = dates.from_filename(name, dates.zone("UTC"))
    assert day is not None and (day.year, day.hour) == (year, 0)


def test_one_digit_years_are_no_post_date() -> None:
    from feedsvc import dates

    assert dates.from_filename("9-3-5-x.md", dates.zone("UTC")) is None
    assert not jekyll.POST_FILENAME.match("9-3-5-x.md")
    assert not jekyll.POST_FILENAME.match("2022-03-05-no-extension")
    assert jekyll.POST_FILENAME.match("22-03-05-x.md")


# EntryFilter, rule by rule (Jekyll::EntryFilter#filter and #glob_include?; the
# fixture of test_jekyll_compat.py checks the same against `jekyll build`).
@pytest.mark.parametrize(("exclude", "include", "prefix", "rel", "rejected"), [
    ((), (), "", "_posts/2022-01-01-a.md", False),
    (("old",), (), "", "old/_posts/2022-01-01-a.md", True),
    (("old",), (), "", "oldies/_posts/2022-01-01-a.md", True),     # String#start_with?
    (("old/",), (), "", "old/_posts/2022-01-01-a.md", True),       # a folder with its '/'
    (("old/",), (), "", "oldies/_posts/2022-01-01-a.md", False),
    (("a/b",), (), "", "a/b/_posts/2022-01-01-a.md", True),
    (("b",), (), "", "a/b/_posts/2022-01-01-a.md", False),         # below the source only
    (("_posts/*-x.md",), (), "", "_posts/2022-01-01-x.md", True),  # fnmatch: * crosses '/'
    (("_posts/*-x.md",), (), "", "_posts/sub/2022-01-01-x.md", True),
    (("*.markdown",), (), "", "_posts/2022-01-01-x.markdown", True),
    ((), (), "", "_hidden/_posts/2022-01-01-a.md", True),          # special names
    ((), (), "", "#x/_posts/2022-01-01-a.md", True),
    ((), (), "", "~x/_posts/2022-01-01-a.md", True),
    ((), (), "", "_posts/_sub/2022-01-01-a.md", True),
    ((), (), "", "_posts/sub/_deeper/2022-01-01-a.md", False),     # first part and name only
    ((), ("_hidden",), "", "_hidden/_posts/2022-01-01-a.md", False),
    (("keep",), ("keep/_posts",), "", "keep/_posts/2022-01-01-a.md", True),  # not entered
    (("news",), (), "coll", "news/_posts/2022-01-01-a.md", False),  # below collections_dir
    (("coll/news",), (), "coll", "news/_posts/2022-01-01-a.md", True),
])
def test_entry_filter(exclude: tuple[str, ...], include: tuple[str, ...], prefix: str, rel: str,
                      rejected: bool) -> None:
    assert jekyll.EntryFilter(exclude, include, prefix).rejects(rel) is rejected


def test_exclude_and_include_read_from_config_yml(tmp_path: Path) -> None:
    root = site(tmp_path / "site", BASE + "exclude: [old]\ninclude: [_keep]\n")
    post = "---\ntitle: A\n---\nx\n"
    for rel in ("_posts/2022-03-21-a.md", "old/_posts/2022-03-21-b.md",
                "_keep/_posts/2022-03-21-c.md", "_other/_posts/2022-03-21-d.md",
                "vendor/bundle/_posts/2022-03-21-e.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(post)
    config = load_config(root)
    assert config.jekyll_reading is not None and "vendor/bundle/" in config.jekyll_reading.exclude
    index = Index(config)
    index.scan()
    assert sorted(index.posts) == ["_keep/_posts/2022-03-21-c.md", "_posts/2022-03-21-a.md"]
    with pytest.raises(ConfigError, match=r"exclude: must be a list"):
        load_config(site(tmp_path / "bad", BASE + "exclude: old\n"))


def test_check_reports_an_undated_file_name_jekyll_skips(tmp_path: Path) -> None:
    """A file in _posts without a dated name is no post to Jekyll (it writes
    no page for it): `feedsvc check` says so by file, and it is in no feed."""
    import subprocess
    import sys

    root = site(tmp_path / "site", BASE)
    (root / "_posts" / "2022-03-21-a.md").write_text("---\ntitle: A\n---\nx\n")
    (root / "_posts" / "about.md").write_text("---\ntitle: About\ndate: 2022-03-22\n---\nx\n")
    proc = subprocess.run([sys.executable, "-m", "feedsvc", "check", "--config", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"{root / '_posts' / 'about.md'}: Jekyll does not publish it: a post's file name "
            "must start with its date (YYYY-MM-DD-title.md)") in proc.stdout
    with create_app(load_config(root), watch=False).test_client() as client:
        assert b"About" not in client.get("/feed.xml").data


def test_draft_true_is_in_no_feed_of_a_jekyll_site(tmp_path: Path) -> None:
    root = site(tmp_path / "site", BASE)
    (root / "_posts" / "2022-03-21-a.md").write_text("---\ntitle: Kept\n---\nx\n")
    (root / "_posts" / "2022-03-22-b.md").write_text("---\ntitle: Draft\ndraft: true\n---\nx\n")
    (root / "_posts" / "2022-03-23-c.md").write_text("---\ntitle: Not a bool\ndraft: yes please\n"
                                                    "---\nx\n")
    with create_app(load_config(root), watch=False).test_client() as client:
        body = client.get("/feed.xml").data
    assert b"Kept" in body and b"Not a bool" in body and b">Draft<" not in body
