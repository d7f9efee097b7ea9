"""The hostile corpus: posts that attack each rule of DESIGN.md, each beside
the outcome it must have.

tests/fixtures/hostile/_posts/<file> is a post; <file>.expect.json says what
must become of it (adding a case = adding two files):

  {"outcome": "served", "date": RFC 3339 as the feed must write it,
   "title": ..., "updated": ..., "summary": ..., "tags": [...],
   "present": [substrings of the content HTML], "absent": [...]}
  {"outcome": "skipped", "reason": a substring of the reported problem}
  {"outcome": "hidden"}   a good post that no feed shows (draft, future, unconfigured)
  {"outcome": "ignored"}  not a post at all, not reported

The whole corpus is served as one site, so every case also checks that one
bad post never takes down the feeds around it. Cases that git cannot carry
(symlinks, FIFOs, unreadable and multi-megabyte files) are made at run time below.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import lxml.html
import pytest
from lxml import etree
from support import FIXTURES, make_site, post, use_index

from feedsvc.app import create_app
from feedsvc.config import Config, load_config
from feedsvc.index import Index
from feedsvc.posts import MAX_POST_BYTES

HOSTILE = FIXTURES / "hostile"
CASES = sorted((HOSTILE / "_posts").rglob("*.expect.json"))
NS = {"a": "http://www.w3.org/2005/Atom", "content": "http://purl.org/rss/1.0/modules/content/"}
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
FORBIDDEN_TAGS = {"script", "style", "iframe", "object", "embed", "form", "svg", "math",
                  "meta", "base", "link", "noscript"}
URL_ATTRS = ("href", "src", "poster")
NOBODY = 65534


@dataclass
class Served:
    """One entry as the three formats of /feeds/all carry it."""
    json: dict[str, Any]
    atom: etree._Element
    rss: etree._Element


@dataclass
class Corpus:
    index: Index
    problems: dict[str, str]
    entries: dict[str, Served]          # by entry id
    documents: dict[str, bytes]         # every feed URL → body
    status: dict[str, Any]

    def entry_of(self, rel: str) -> Served | None:
        post = self.index.posts.get(rel)
        if post is None or post.rel not in {p.rel for p in self.index.views().all}:
            return None
        return self.entries.get(post.guid)


def _feed_urls(tags: list[str], categories: list[str]) -> list[str]:
    from urllib.parse import quote
    names = [f"/feeds/{c}" for c in [*categories, "all"]] + [f"/tags/{quote(t, safe='')}" for t in tags]
    return [f"{n}.{fmt}" for n in names for fmt in ("rss", "atom", "json")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(HOSTILE, root, dirs_exist_ok=True)
    config = load_config(use_index(root / "config.yaml"))
    app = create_app(config, watch=False)
    service = app.extensions["feedsvc"]
    client = app.test_client()
    docs = {}
    for url in _feed_urls(sorted(service.index.views().tags), list(config.categories)):
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code, resp.get_data(as_text=True))
        docs[url] = resp.get_data()
    items = json.loads(docs["/feeds/all.json"])["items"]
    atom = etree.fromstring(docs["/feeds/all.atom"])
    rss = etree.fromstring(docs["/feeds/all.rss"])
    atom_by_id = {e.findtext("a:id", namespaces=NS): e for e in atom.iterfind("a:entry", NS)}
    rss_by_id = {i.findtext("guid"): i for i in rss.iter("item")}
    entries = {i["id"]: Served(i, atom_by_id[i["id"]], rss_by_id[i["id"]]) for i in items}
    status = client.get("/status").get_json()
    return Corpus(service.index, dict(service.index.problem_list()), entries, docs, status)


def _rel(case: Path) -> str:
    return case.relative_to(HOSTILE / "_posts").as_posix().removesuffix(".expect.json")


@pytest.mark.parametrize("case", CASES, ids=_rel)
def test_case(corpus: Corpus, case: Path) -> None:
    expect = json.loads(case.read_text(encoding="utf-8"))
    rel = _rel(case)
    outcome = expect["outcome"]
    if outcome == "skipped":
        assert rel in corpus.problems, f"{rel} was not reported"
        assert expect["reason"] in corpus.problems[rel]
        assert corpus.entry_of(rel) is None
    elif outcome == "ignored":
        assert rel not in corpus.index.posts and rel not in corpus.problems
    elif outcome == "hidden":
        assert rel not in corpus.problems, corpus.problems.get(rel)
        assert corpus.entry_of(rel) is None
    else:
        assert outcome == "served"
        assert rel not in corpus.problems, corpus.problems.get(rel)
        served = corpus.entry_of(rel)
        assert served is not None, f"{rel} is in no feed"
        check_served(served, expect)


def check_served(s: Served, expect: dict[str, Any]) -> None:
    date = dt.datetime.fromisoformat(expect["date"])
    updated = dt.datetime.fromisoformat(expect.get("updated", expect["date"]))
    assert s.json["date_published"] == expect["date"]
    assert s.json["date_modified"] == expect.get("updated", expect["date"])
    assert s.atom.findtext("a:published", namespaces=NS) == expect["date"]
    assert dt.datetime.fromisoformat(s.atom.findtext("a:updated", namespaces=NS) or "") == updated
    pub = s.rss.findtext("pubDate") or ""
    assert email.utils.parsedate_to_datetime(pub) == date
    assert pub.endswith(date.strftime("%z")), "RSS keeps the offset as written"
    if "title" in expect:
        assert s.json["title"] == expect["title"]
        assert s.atom.findtext("a:title", namespaces=NS) == expect["title"]
        assert s.rss.findtext("title") == expect["title"]
    if "summary" in expect:
        assert s.json["summary"] == expect["summary"]
        assert s.rss.findtext("description") == expect["summary"]
    for tag in expect.get("tags", []):
        assert tag in s.json["tags"]
        assert tag in [c.text for c in s.rss.iter("category")]
    bodies = [s.json["content_html"], s.atom.findtext("a:content", namespaces=NS) or "",
              s.rss.findtext("content:encoded", namespaces=NS) or ""]
    for html in bodies:
        for text in expect.get("present", []):
            assert text in html
        for text in expect.get("absent", []):
            assert text not in html


def test_every_case_has_a_post() -> None:
    for case in CASES:
        assert case.with_name(case.name.removesuffix(".expect.json")).exists(), case


def test_status_reports_every_skipped_post(corpus: Corpus) -> None:
    reported = {s["file"] for s in corpus.status["skipped"]}
    assert reported == set(corpus.problems)
    skipped = {_rel(c) for c in CASES if json.loads(c.read_text())["outcome"] == "skipped"}
    assert skipped <= reported


def test_every_feed_is_well_formed_and_safe(corpus: Corpus) -> None:
    for url, body in corpus.documents.items():
        if url.endswith(".json"):
            doc = json.loads(body)
            htmls = [i["content_html"] for i in doc["items"]]
            assert not XML_ILLEGAL.search(body.decode("utf-8")), url
        else:
            root = etree.fromstring(body)   # strict XML: raises on any illegal character
            parsed = feedparser.parse(body)
            assert not parsed.bozo, (url, parsed.get("bozo_exception"))
            htmls = [e.text or "" for e in root.iter(f"{{{NS['a']}}}content",
                                                     f"{{{NS['content']}}}encoded")]
        assert htmls or "/tags/" not in url
        for html in htmls:
            assert_safe(html)


def assert_safe(html: str) -> None:
    """No active content and no relative URL, checked on the parsed HTML."""
    if not html.strip():
        return
    for el in lxml.html.fragments_fromstring(html, no_leading_text=False):
        if not isinstance(el, lxml.html.HtmlElement):
            continue
        for node in el.iter():
            if not isinstance(node.tag, str):
                continue
            assert node.tag not in FORBIDDEN_TAGS, lxml.html.tostring(node)[:200]
            for name, value in node.attrib.items():
                assert not name.lower().startswith("on"), (node.tag, name)
                assert name != "style"
                if name in URL_ATTRS:
                    assert re.match(r"^(https?:|mailto:)", value), (node.tag, name, value)
                if name == "srcset":
                    for candidate in value.split(","):
                        assert re.match(r"^https?://", candidate.strip()), value


def test_check_command_lists_every_skipped_post(tmp_path: Path) -> None:
    shutil.copytree(HOSTILE, tmp_path, dirs_exist_ok=True)
    run = subprocess.run([sys.executable, "-m", "feedsvc", "check", "--config",
                          str(tmp_path / "config.yaml")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    for case in CASES:
        if json.loads(case.read_text())["outcome"] == "skipped":
            assert f"{_rel(case)}: " in run.stdout


# -- cases made at run time ---------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site", {
        "2022-03-21-good.md": post("Good", "2022-03-21 06:00:08 +0800"),
    })


def scan(config_path: Path) -> Index:
    index = Index(load_config(config_path))
    index.scan()
    return index


def test_symlinks_leading_outside_posts_dir_are_ignored(site: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "_posts").mkdir(parents=True)
    secret = outside / "2022-03-21-secret.md"
    secret.write_text(post("Secret", "2022-03-21"), encoding="utf-8")
    posts = site.parent / "_posts"
    (posts / "2022-03-21-link-to-file.md").symlink_to(secret)
    (posts / "linked-folder").symlink_to(outside)
    (posts / "2022-03-21-passwd.md").symlink_to("/etc/passwd")
    (posts / "2022-03-21-loop.md").symlink_to(posts / "2022-03-21-loop.md")
    (posts / "2022-03-21-dangling.md").symlink_to(tmp_path / "nowhere.md")
    index = scan(site)
    assert set(index.posts) == {"2022-03-21-good.md"}
    assert index.problems == {}


def test_fifo_and_folder_named_like_posts_are_ignored(site: Path) -> None:
    posts = site.parent / "_posts"
    os.mkfifo(posts / "2022-03-21-fifo.md")   # opening it would block forever
    (posts / "2022-03-21-folder.md").mkdir()
    index = scan(site)
    assert set(index.posts) == {"2022-03-21-good.md"}
    assert index.problems == {}


def test_unreadable_post_is_skipped_and_reported() -> None:
    with _world_readable_site() as cfg:
        config = load_config(cfg)
        scan(cfg)       # loads every module and zone the scan needs, while we may read them
        target = cfg.parent / "_posts" / "2022-03-21-unreadable.md"
        target.write_text(post("Unreadable", "2022-03-21"), encoding="utf-8")
        target.chmod(0)
        posts, problems = _scan_as_nobody(config)
    assert posts == ["2022-03-21-good.md"]
    assert "Permission denied" in problems["2022-03-21-unreadable.md"]


def _scan_as_nobody(config: Config) -> tuple[list[str], dict[str, str]]:
    """Scan in a forked child that has given up root: chmod 000 does not stop
    root, and these tests run as root here. (The interpreter lives under /root,
    so the child is forked rather than started.)"""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            index = Index(config)
            index.scan()
            os.write(write_end, json.dumps([sorted(index.posts), index.problems]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    posts, problems = json.loads(out)
    return posts, problems


@contextmanager
def _world_readable_site() -> Iterator[Path]:
    # pytest's tmp_path lies under a folder only root may enter.
    root = Path(tempfile.mkdtemp(prefix="feedsvc-hostile-"))
    try:
        cfg = make_site(root, {"2022-03-21-good.md": post("Good", "2022-03-21 06:00:08 +0800")})
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        yield cfg
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_huge_body_is_served_and_oversized_file_skipped(site: Path) -> None:
    posts = site.parent / "_posts"
    head = post("Huge", "2022-03-21 06:00:08 +0800", body="")
    filler = "<p>" + "长" * 1000 + "</p>\n"
    n = (MAX_POST_BYTES - len(head.encode()) - 64) // len(filler.encode())
    (posts / "2022-03-20-huge.html").write_text(head + filler * n + "<p>the end</p>\n", encoding="utf-8")
    (posts / "2022-03-20-too-big.html").write_text(head + filler * (n + 30), encoding="utf-8")
    app = create_app(load_config(site), watch=False)
    index = app.extensions["feedsvc"].index
    assert "larger than 8 MiB" in index.problems["2022-03-20-too-big.html"]
    body = app.test_client().get("/feeds/kunmingribao.json").get_json()
    huge = next(i for i in body["items"] if i["title"] == "Huge")
    assert huge["content_html"].endswith("<p>the end</p>\n")
    assert len(huge["summary"]) == 201     # 200 characters and the ellipsis, not bytes
