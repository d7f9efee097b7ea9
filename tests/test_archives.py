"""Archived feeds (RFC 5005 section 4): a reader that follows prev-archive
from the current feed collects every post exactly once, over HTTP from
`feedsvc serve` and from a `feedsvc build` folder; a post's archive is fixed
when it is indexed (a new post, even a back-dated one, never changes a
complete archive); the numbers survive a rebuild of the posts tables and a
damaged table is numbered again and reported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
from lxml import etree
from support import Serve, make_site, post, wait_for

import feedsvc.index
from feedsvc.config import load_config
from feedsvc.export import exporter
from feedsvc.index import Index
from feedsvc.service import FeedService

ATOM = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
FEEDS_URL = "https://feeds.example.com"
CATEGORIES = {"kunmingribao": {"title": "昆明日报新闻", "limit": 4},
              "caijing": {"title": "财经"}}


def posts(n: int, start_day: int = 1) -> dict[str, str]:
    """n posts on consecutive days, alternating categories, tags for some."""
    out = {}
    for i in range(n):
        day = start_day + i
        cat = "kunmingribao" if i % 3 else "caijing"
        tags = "[昆明, 经济]" if i % 2 else "[经济]"
        out[f"2022-01-{day:02d}-p{day}.md"] = post(f"P{day}", f"2022-01-{day:02d} 10:00:00 +0800",
                                                   cat, tags=tags)
    return out


def site(root: Path, n: int = 17) -> Path:
    return make_site(root, posts(n), config={"feeds_url": FEEDS_URL, "limit": 5,
                                             "categories": CATEGORIES})


def add(config: Path, name: str, title: str, date: str, cat: str = "kunmingribao",
        tags: str = "[昆明, 新闻]") -> None:
    (config.parent / "_posts" / name).write_text(post(title, date, cat, tags=tags),
                                                 encoding="utf-8")


# -- a reader walking the history -------------------------------------------------------
Fetch = Callable[[str], bytes | None]


def history(body: bytes, fmt: str) -> tuple[list[str], dict[str, str], bool]:
    """(entry ids, RFC 5005 links by rel, is an archive) of one document."""
    if fmt == "json":
        doc = json.loads(body)
        ext = doc.get("_rfc5005", {})
        links = {k.replace("_", "-"): v for k, v in ext.items() if k not in ("about", "archive")}
        return [i["id"] for i in doc["items"]], links, bool(ext.get("archive"))
    root = etree.fromstring(body)
    node = root if fmt == "atom" else root.find("channel")
    assert node is not None
    links = {el.get("rel"): el.get("href") for el in node.findall(f"{ATOM}link")}
    if fmt == "atom":
        ids = [str(e.findtext(f"{ATOM}id")) for e in root.iter(f"{ATOM}entry")]
    else:
        ids = [str(g.text) for g in root.iter("guid")]
    return ids, links, node.find(f"{FH}archive") is not None


def walk(fetch: Fetch, current_url: str, fmt: str) -> tuple[list[str], list[list[str]]]:
    """The current document's ids, and each archive's ids, newest archive first."""
    body = fetch(current_url)
    assert body is not None, current_url
    current, links, is_archive = history(body, fmt)
    assert not is_archive
    archives: list[list[str]] = []
    url = links.get("prev-archive")
    seen: set[str] = set()
    while url:
        assert url not in seen, f"a loop at {url}"
        seen.add(url)
        body = fetch(url)
        assert body is not None, url
        ids, links, is_archive = history(body, fmt)
        assert is_archive, url
        assert links["current"] == current_url
        archives.append(ids)
        url = links.get("prev-archive")
    return current, archives


def collected_once(fetch: Fetch, current_url: str, fmt: str, expected: set[str]) -> None:
    current, archives = walk(fetch, current_url, fmt)
    everything = [i for ids in archives for i in ids]
    assert len(everything) == len(set(everything)), "a post in two archives"
    assert set(everything) == expected
    assert set(current) <= expected


def guids(root: Path, kind: str, name: str) -> set[str]:
    views = Index(load_config(root / "config.yaml")).views()
    chosen = views.all if kind == "all" else (
        views.categories.get(name, []) if kind == "category" else views.tags.get(name, []))
    return {p.guid for p in chosen}


FEEDS = [("category", "kunmingribao", "/feeds/kunmingribao"), ("category", "caijing",
         "/feeds/caijing"), ("tag", "昆明", "/tags/%E6%98%86%E6%98%8E"), ("all", "all", "/feeds/all")]


def test_a_reader_following_prev_archive_collects_every_post_once_over_http(
        tmp_path: Path, serve: Serve) -> None:
    config = site(tmp_path / "site")
    server = serve(config)

    def fetch(url: str) -> bytes | None:
        resp = requests.get(server.url + urlsplit(url).path, timeout=10)
        return resp.content if resp.status_code == 200 else None

    # Posts arriving while it runs, one of them back-dated before every other.
    add(config, "2022-02-01-late.md", "Late", "2022-02-01 10:00:00 +0800")
    add(config, "2021-06-01-backdated.md", "Backdated", "2021-06-01 10:00:00 +0800")
    wait_for(lambda: b"Backdated" in requests.get(server.url + "/feeds/all.atom",
                                                  timeout=10).content
             or any(b"Backdated" in (fetch(u) or b"") for u in
                    [f"{FEEDS_URL}/feeds/all/archive/{n}.atom" for n in (4, 5)]))
    for kind, name, path in FEEDS:
        expected = guids(config.parent, kind, name)
        assert expected
        for fmt in ("rss", "atom", "json"):
            collected_once(fetch, f"{FEEDS_URL}{path}.{fmt}", fmt, expected)


def test_a_reader_walking_a_build_folder_collects_every_post_once(tmp_path: Path) -> None:
    config = site(tmp_path / "site")
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(config),
                    "--out", str(out)], check=True, capture_output=True, timeout=300)

    def fetch(url: str) -> bytes | None:
        path = out / unquote(urlsplit(url).path).lstrip("/")
        return path.read_bytes() if path.is_file() else None

    for kind, name, path in FEEDS:
        expected = guids(config.parent, kind, name)
        for fmt in ("rss", "atom", "json"):
            collected_once(fetch, f"{FEEDS_URL}{path}.{fmt}", fmt, expected)


# -- archives are fixed at indexing ---------------------------------------------------
def build_tree(config: Path, out: Path) -> dict[str, bytes]:
    exporter(load_config(config), out).build()
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


def test_a_new_post_even_back_dated_never_changes_a_complete_archive(tmp_path: Path) -> None:
    config = site(tmp_path / "site", n=20)     # all: 20 posts, 5 per archive: 4 full ones
    out = tmp_path / "out"
    before = build_tree(config, out)
    assert "feeds/all/archive/4.atom" in before and "feeds/all/archive/5.atom" not in before
    add(config, "2021-01-01-backdated.md", "Backdated", "2021-01-01 10:00:00 +0800")
    after = build_tree(config, out)
    # It went into a new archive (5), not into archive 1 where its date would put it.
    assert b"Backdated" in after["feeds/all/archive/5.atom"]
    changed = {k for k in after if before.get(k) != after[k]}
    # Archive 4 was full, so it linked archive 5 already (a 404 until now): it
    # does not change when 5 begins. Only the new archive is written.
    assert history(before["feeds/all/archive/4.atom"], "atom")[1]["next-archive"] == (
        f"{FEEDS_URL}/feeds/all/archive/5.atom")
    assert {k.rsplit(".", 1)[0] for k in changed if k.startswith("feeds/all/")} == {
        "feeds/all/archive/5"}
    for name in ("1", "2", "3", "4"):
        for fmt in ("rss", "atom", "json"):
            assert before[f"feeds/all/archive/{name}.{fmt}"] == after[
                f"feeds/all/archive/{name}.{fmt}"]


def test_an_edit_or_a_deletion_changes_only_the_archive_of_that_post(tmp_path: Path) -> None:
    config = site(tmp_path / "site", n=20)
    out = tmp_path / "out"
    before = build_tree(config, out)
    oldest = config.parent / "_posts" / "2022-01-01-p1.md"      # in archive 1 of all
    oldest.write_text(oldest.read_text(encoding="utf-8").replace("正文", "改过的正文"),
                      encoding="utf-8")
    deleted = config.parent / "_posts" / "2022-01-07-p7.md"     # archive 2 of all
    text = deleted.read_text(encoding="utf-8")
    deleted.unlink()
    after = build_tree(config, out)
    changed = {k.rsplit(".", 1)[0] for k in after if before.get(k) != after[k]
               and k.startswith("feeds/all")}
    # Neither is among the newest five: the current document stays as it was.
    assert changed == {"feeds/all/archive/1", "feeds/all/archive/2"}
    assert "改过的正文" in after["feeds/all/archive/1.atom"].decode()
    ids, _, _ = history(after["feeds/all/archive/2.json"], "json")
    assert len(ids) == 4 and not any(i.endswith("/p7.html") for i in ids)   # a hole, kept
    # A post deleted and brought back gets its old place again.
    deleted.write_text(text, encoding="utf-8")
    assert len(history(build_tree(config, out)["feeds/all/archive/2.json"], "json")[0]) == 5


def test_one_new_post_rewrites_only_its_current_documents_and_open_archives(
        tmp_path: Path) -> None:
    config = site(tmp_path / "site", n=23)
    out = tmp_path / "out"
    build_tree(config, out)
    add(config, "2022-03-01-new.md", "New", "2022-03-01 10:00:00 +0800", "caijing",
        "[bench-one, bench-two]")
    report = exporter(load_config(config), out).build()
    written = sorted(p.relative_to(out).as_posix() for p in report.written)
    stems = {w.rsplit(".", 1)[0] for w in written if w.startswith(("feeds/", "tags/"))}
    assert stems == {"feeds/caijing", "feeds/caijing/archive/2", "feeds/all",
                     "feeds/all/archive/5", "tags/bench-one", "tags/bench-one/archive/1",
                     "tags/bench-two", "tags/bench-two/archive/1"}
    assert set(written) - {f"{s}.{f}" for s in stems for f in ("rss", "atom", "json")} == {
        "index.html"}      # the two new tags are listed there
    # Only those were rendered (and the index page and OPML, compared by bytes).
    assert report.rendered == len(written) + 1


def test_archive_cache_control_follows_archive_max_age(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", posts(7), config={
        "feeds_url": FEEDS_URL, "limit": 5, "categories": CATEGORIES,
        "archive_max_age": "2h", "archive_size": 3})
    service = FeedService(load_config(config))
    service.start()
    from feedsvc.app import create_app

    client = create_app(service.config, watch=False, service=service).test_client()
    assert client.get("/feeds/all/archive/1.rss").headers["Cache-Control"] == (
        "public, max-age=7200")
    assert client.get("/feeds/all/archive/3.rss").headers["Cache-Control"] == (
        "public, max-age=300")     # still filling: archive_size 3, 7 posts
    assert client.get("/feeds/all/archive/4.rss").status_code == 404


@pytest.mark.parametrize(("value", "message"), [
    ("archive_size: 0", "archive_size: must be between 1 and 10000, not 0"),
    ("archive_max_age: forever", "archive_max_age"),
    ("archive_sise: 3", "did you mean 'archive_size'"),
])
def test_archive_settings_are_validated(tmp_path: Path, value: str, message: str) -> None:
    config = make_site(tmp_path / "site", posts(1))
    with config.open("a", encoding="utf-8") as fh:
        fh.write(value + "\n")
    proc = subprocess.run([sys.executable, "-m", "feedsvc", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr + proc.stdout


# -- the numbers are the index's: kept across rebuilds, repaired when damaged ----------------
def archive_ids(config: Path) -> dict[str, list[str]]:
    service = FeedService(load_config(config))
    service.start()
    out: dict[str, list[str]] = {}
    from feedsvc.errors import NotFound
    from feedsvc.feeds import FeedKey

    n = 1
    while True:
        try:
            body = service.document(FeedKey("all", "all", "json", n)).body
        except NotFound:
            break
        out[str(n)] = history(body, "json")[0]
        n += 1
    service.index.close()
    return out


def test_archive_numbers_survive_an_index_format_bump(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = site(tmp_path / "site", n=20)
    archive_ids(config)
    add(config, "2021-01-01-backdated.md", "Backdated", "2021-01-01 10:00:00 +0800")
    before = archive_ids(config)
    assert any(i.endswith("backdated.html") for i in before["5"])
    # A new INDEX_FORMAT is another index (file or schema): the posts are read
    # again, and a first indexing by date would put the back-dated post in archive 1.
    monkeypatch.setattr(feedsvc.index, "INDEX_FORMAT", feedsvc.index.INDEX_FORMAT + 1000)
    fresh = Index(load_config(config))
    assert not fresh.ready
    fresh.close()
    assert archive_ids(config) == before


def damage(config: Path, sql: str) -> None:
    index = Index(load_config(config))
    with index.db.write() as tx:
        tx.run(sql)
    index.close()


@pytest.mark.parametrize("sql", [
    "UPDATE archive_slots SET seq = 9999 WHERE kind = '*' AND seq = 3",
    "UPDATE archive_slots SET seq = -1 WHERE kind = 'c' AND seq = 2",
    "DELETE FROM archive_feeds WHERE kind = '*'",
])
def test_a_damaged_archive_table_is_numbered_again_and_reported(tmp_path: Path,
                                                                sql: str) -> None:
    config = site(tmp_path / "site")
    archive_ids(config)
    damage(config, sql)
    service = FeedService(load_config(config))
    service.start()
    info = service.index.describe()
    assert "archive numbers of" in str(info.get("archives_repaired"))
    assert "numbered again" in str(info["archives_repaired"])
    service.index.close()

    def fetch(url: str) -> bytes | None:
        from feedsvc.errors import NotFound
        from feedsvc.feeds import FeedKey

        path = urlsplit(url).path
        name, fmt = path.rsplit(".", 1)
        parts = name.strip("/").split("/")
        kind = "all" if parts[1] == "all" else "category"
        number = int(parts[3]) if len(parts) > 2 else 0
        try:
            return service.document(FeedKey(kind, parts[1], fmt, number)).body
        except NotFound:
            return None

    service = FeedService(load_config(config))
    service.start()
    for kind, name, path in FEEDS:
        if kind != "tag":
            collected_once(fetch, f"{FEEDS_URL}{path}.json", "json",
                           guids(config.parent, kind, name))


def test_status_shows_a_repair(tmp_path: Path, serve: Serve) -> None:
    config = site(tmp_path / "site")
    archive_ids(config)
    damage(config, "UPDATE archive_slots SET seq = 9999 WHERE kind = '*' AND seq = 3")
    server = serve(config)
    # The catch-up scan of a start with an index runs in the background.
    wait_for(lambda: "the site-wide feed were damaged" in json.dumps(
        server.get("/status").json(), ensure_ascii=False))
