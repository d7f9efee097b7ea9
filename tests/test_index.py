"""The post index: which files are posts, problems as data, views per category,
future posts, incremental rescans and the saved index."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import FIXTURES, FakeClock, make_site, post

from feedsvc.config import Config, load_config
from feedsvc.index import Index, iter_post_files, reading
from feedsvc.posts import Post

POSTS = FIXTURES / "posts"
UTC = dt.UTC
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
BAD = {
    "2022-03-25-bad-date.md": "cannot parse date 'next tuesday-ish'",
    "2022-03-25-time-without-date.md": "no full calendar date",
    "2022-03-26-malformed-yaml.md": "invalid YAML",
    "2022-03-27-no-front-matter.md": "no front matter",
    "2022-03-27-unclosed-front-matter.md": "not closed",
    "2022-03-28-gbk-bytes.md": "not valid UTF-8",
    "2022-03-29-alias-bomb.md": "aliases",
    "2022-03-30-date-out-of-range.md": "out of range",
    "2022-03-21-front-matter-a-list.md": "must be a mapping",
    "2022-03-21-title-a-mapping.md": "must be text",
}


def every_fixture_post(tmp_path: Path) -> Config:
    config = load_config(make_site(tmp_path / "site"))
    for src in POSTS.iterdir():
        shutil.copyfile(src, config.posts_dir / src.name)
    return config


def titles(posts: list[Post]) -> list[str]:
    return [p.title for p in posts]


def test_bad_posts_are_reported_with_file_and_reason_and_the_rest_is_intact(
        tmp_path: Path) -> None:
    config = every_fixture_post(tmp_path)
    index = Index(config, FakeClock(NOW))
    index.scan()
    problems = dict(index.problem_list())
    for name, reason in BAD.items():
        assert reason in problems.pop(name), name
    assert problems == {"2022-03-21-duplicate-permalink-b.md":
                        "same id as 2022-03-21-duplicate-permalink-a.md "
                        "(https://news.example.com/same.html); skipped"}
    views = index.views()
    feed = titles(views.categories["kunmingribao"])
    assert "Date from the file name" not in feed                    # that one is in world only
    assert {"Categories as a list", "Tags as a list", "Non-ASCII slug", "Title From Slug",
            "First of two with one permalink"} <= set(feed)
    for hidden in ("Second of two with one permalink", "Draft", "From the future"):
        assert hidden not in feed
    assert len(index.posts) == len(list(POSTS.iterdir())) - len(BAD)


def test_unconfigured_category_is_in_no_category_feed_and_no_problem(tmp_path: Path) -> None:
    config = every_fixture_post(tmp_path)
    index = Index(config, FakeClock(NOW))
    index.scan()
    assert "2022-03-21-unconfigured-category.md" not in dict(index.problem_list())
    views = index.views()
    for slug in config.categories:
        assert "In a category nobody configured" not in titles(views.categories.get(slug, []))


def test_views_are_newest_first_ties_by_ascending_id(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site", {
        "2022-03-21-b.md": post("B", "2022-03-21 10:00:00 +0800"),
        "2022-03-21-a.md": post("A", "2022-03-21 10:00:00 +0800"),
        "2022-03-21-c.md": post("C", "2022-03-21 03:00:00 +0100"),   # 10:00 +0800, same instant
        "2022-03-22-new.md": post("New", "2022-03-22 10:00:00 +0800"),
    }))
    index = Index(config, FakeClock(NOW))
    index.scan()
    assert titles(index.views().categories["kunmingribao"]) == ["New", "A", "B", "C"]


def test_future_post_appears_when_the_clock_passes_its_date(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site"))
    shutil.copyfile(POSTS / "2030-01-01-future.md", config.posts_dir / "2030-01-01-future.md")
    instant = dt.datetime(2030, 1, 1, 0, 0, tzinfo=UTC)             # 08:00 +0800
    clock = FakeClock(instant - dt.timedelta(seconds=1))
    index = Index(config, clock)
    index.scan()
    assert index.views().categories.get("kunmingribao", []) == []
    assert index.views().expires == instant
    clock.now = instant
    assert titles(index.views().categories["kunmingribao"]) == ["From the future"]


def test_unpublished_post_is_never_in_a_view(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site"))
    shutil.copyfile(POSTS / "2022-03-20-unpublished.md", config.posts_dir / "x-unpublished.md")
    index = Index(config, FakeClock(NOW))
    index.scan()
    assert len(index.posts) == 1 and index.views().all == []
    assert index.problem_list() == []


def layout(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def test_jekyll_file_rules_when_posts_dir_holds_post_folders(tmp_path: Path) -> None:
    body = post("T", "2022-03-21 10:00:00 +0800")
    layout(tmp_path, {
        "_posts/2022-03-21-top.md": body,
        "kunmingribao/_posts/2022-03-21-folder.markdown": body,
        "a/b/_posts/deep/2022-03-21-nested.html": body,
        "about.md": body,                                  # not inside a _posts folder
        "kunmingribao/index.md": body,
        "_posts/.2022-03-21-hidden.md": body,
        "_posts/.drafts/2022-03-21-in-hidden-folder.md": body,
        ".git/_posts/2022-03-21-in-hidden-parent.md": body,
        "_posts/image.png": "png",
        "_posts/.DS_Store": "",
        "_posts/notes.txt": body,
    })
    assert sorted(iter_post_files(tmp_path)) == [
        "_posts/2022-03-21-top.md",
        "a/b/_posts/deep/2022-03-21-nested.html",
        "kunmingribao/_posts/2022-03-21-folder.markdown",
    ]


def test_every_post_file_counts_when_posts_dir_is_a_posts_folder(tmp_path: Path) -> None:
    body = post("T", "2022-03-21 10:00:00 +0800")
    root = tmp_path / "_posts"
    layout(root, {"2022-03-21-top.md": body, "sub/2022-03-21-sub.htm": body,
                  ".hidden/2022-03-21-x.md": body, "sub/.x.md": body, "pic.jpg": ""})
    assert sorted(iter_post_files(root)) == ["2022-03-21-top.md", "sub/2022-03-21-sub.htm"]


def test_symlink_leading_outside_posts_dir_is_ignored(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site"))
    outside = tmp_path / "secret.md"
    outside.write_text(post("Secret", "2022-03-21 10:00:00 +0800"), encoding="utf-8")
    os.symlink(outside, config.posts_dir / "2022-03-21-link.md")
    index = Index(config, FakeClock(NOW))
    index.scan()
    assert index.posts == {} and index.problem_list() == []


class CountingReads:
    """Wraps the real read_post_text to count which files the index reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = reading.read_post_text

        def counted(posts_dir: Path, rel: str, config: Config) -> tuple[Post, str]:
            self.calls.append(rel)
            return real(posts_dir, rel, config)

        monkeypatch.setattr(reading, "read_post_text", counted)

    def take(self) -> list[str]:
        calls, self.calls = sorted(self.calls), []
        return calls


def small_site(tmp_path: Path) -> Config:
    return load_config(make_site(tmp_path / "site", {
        f"2022-03-2{i}-p{i}.md": post(f"P{i}", f"2022-03-2{i} 10:00:00 +0800") for i in range(1, 5)
    }))


def test_rescan_reads_only_changed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_site(tmp_path)
    reads = CountingReads(monkeypatch)
    index = Index(config, FakeClock(NOW))
    index.scan()
    assert len(reads.take()) == 4
    assert index.scan() == set() and reads.take() == []

    changed = config.posts_dir / "2022-03-22-p2.md"
    changed.write_text(post("P2 edited", "2022-03-22 10:00:00 +0800"), encoding="utf-8")
    os.utime(changed, ns=(1, 1_700_000_000_000_000_000))
    (config.posts_dir / "2022-03-23-p3.md").unlink()
    (config.posts_dir / "2022-03-25-p5.md").write_text(post("P5", "2022-03-25 10:00:00 +0800"),
                                                       encoding="utf-8")
    generation = index.generation
    assert index.scan() == {"2022-03-22-p2.md", "2022-03-23-p3.md", "2022-03-25-p5.md"}
    assert reads.take() == ["2022-03-22-p2.md", "2022-03-25-p5.md"]
    assert index.generation > generation
    assert titles(index.views().all) == ["P5", "P4", "P2 edited", "P1"]


def test_update_with_named_paths_reads_just_those(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_site(tmp_path)
    index = Index(config, FakeClock(NOW))
    index.scan()
    reads = CountingReads(monkeypatch)
    path = config.posts_dir / "2022-03-21-p1.md"
    path.write_text(post("P1 again", "2022-03-21 10:00:00 +0800"), encoding="utf-8")
    os.utime(path, ns=(1, 1_700_000_000_000_000_000))
    assert index.update(["2022-03-21-p1.md", "2022-03-22-p2.md"]) == {"2022-03-21-p1.md"}
    assert reads.take() == ["2022-03-21-p1.md"]


def test_saved_index_reloads_and_only_changed_files_are_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_site(tmp_path)
    first = Index(config, FakeClock(NOW))
    first.scan()
    first.save_state()
    (config.posts_dir / "2022-03-30-bad.md").write_text("no front matter", encoding="utf-8")

    reads = CountingReads(monkeypatch)
    second = Index(config, FakeClock(NOW))
    assert second.load_state()
    assert second.posts == first.posts
    assert second.scan() == {"2022-03-30-bad.md"}
    assert reads.take() == ["2022-03-30-bad.md"]
    assert [rel for rel, _ in second.problem_list()] == ["2022-03-30-bad.md"]


def test_saved_index_is_per_post_rules(tmp_path: Path) -> None:
    # Another permalink pattern reads posts differently: the old index is not reused.
    config = small_site(tmp_path)
    first = Index(config, FakeClock(NOW))
    first.scan()
    first.save_state()
    other: Any = load_config(make_site(tmp_path / "site", config={"permalink": "/:title/"}))
    assert Index(other, FakeClock(NOW)).load_state() is False


def test_missing_or_corrupt_saved_index_means_a_full_scan(tmp_path: Path) -> None:
    config = small_site(tmp_path)
    index = Index(config, FakeClock(NOW))
    assert index.load_state() is False
    index.scan()
    index.close()
    [db] = config.state_dir.glob("index-*.sqlite3")
    for extra in config.state_dir.glob("index-*.sqlite3-*"):
        extra.unlink()
    db.write_bytes(b"not a database" * 512)
    again = Index(config, FakeClock(NOW))
    assert again.load_state() is False
    assert len(again.scan()) == 4
    assert (db.parent / (db.name + ".corrupt")).exists()


def test_truncated_index_is_rebuilt_not_misread(tmp_path: Path) -> None:
    config = small_site(tmp_path)
    index = Index(config, FakeClock(NOW))
    index.scan()
    index.close()
    [db] = config.state_dir.glob("index-*.sqlite3")
    for extra in config.state_dir.glob("index-*.sqlite3-*"):
        extra.unlink()
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 3)
    again = Index(config, FakeClock(NOW))
    again.scan()
    assert titles(again.views().all) == ["P4", "P3", "P2", "P1"]


def test_an_index_saved_by_an_older_feedsvc_is_not_read(tmp_path: Path) -> None:
    # feedsvc up to index format 4 pickled its index; that file is left alone
    # (another name) and the posts are read again.
    config = small_site(tmp_path)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / "index-0123456789abcdef.pickle").write_bytes(b"\x80\x05old")
    index = Index(config, FakeClock(NOW))
    assert index.load_state() is False
    assert len(index.scan()) == 4


def test_an_update_is_not_held_up_by_a_rescan_comparing_stats(
        tmp_path: Path, monkeypatch: Any) -> None:
    """At a million posts the catch-up rescan after a start compares stats for
    tens of seconds: a change reported meanwhile is read at once, and a post
    written after the disk was listed is not taken for gone when the stored
    stats (which by then have it) are compared."""
    import threading

    from feedsvc import index as index_module

    posts = {f"2022-03-{d:02d}-p{d}.md": post(f"第{d}条", f"2022-03-{d:02d} 06:00:00 +0800")
             for d in range(10, 14)}
    config = load_config(make_site(tmp_path / "site", posts))
    index = Index(config)
    index.scan()
    listed, go_on = threading.Event(), threading.Event()
    merge = index_module._Scratch.merge

    def slow_merge(self: Any, stored: Any) -> int:
        listed.set()                  # the disk has been listed: the new post is not in it
        assert go_on.wait(30)
        return merge(self, stored)

    monkeypatch.setattr(index_module._Scratch, "merge", slow_merge)
    (config.posts_dir / "2022-03-20-other.md").write_text(
        post("扫描前的改动", "2022-03-20 06:00:00 +0800"), encoding="utf-8")
    scan = threading.Thread(target=index.scan)
    scan.start()
    try:
        assert listed.wait(30)
        new = "2022-03-21-during-the-rescan.md"
        (config.posts_dir / new).write_text(post("重扫期间的新文章", "2022-03-21 06:00:00 +0800"),
                                            encoding="utf-8")
        assert index.update([new]) == {new}           # not waiting for the rescan
        assert "重扫期间的新文章" in titles(index.views().posts("category", "kunmingribao", 0, 50))
    finally:
        go_on.set()
        scan.join(30)
    shown = titles(index.views().posts("category", "kunmingribao", 0, 50))
    assert "重扫期间的新文章" in shown and "扫描前的改动" in shown
    index.close()


def test_an_index_from_before_archives_is_an_expected_upgrade_not_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An index file of a feedsvc without archive tables beside the new one: the
    # new index has no numbers to take from it, which is what an upgrade is.
    import sqlite3

    config = small_site(tmp_path)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(config.state_dir / "index-0123456789abcdef.sqlite3")
    old.execute("CREATE TABLE posts (rel TEXT PRIMARY KEY)")
    old.commit()
    old.close()
    with caplog.at_level("INFO", logger="feedsvc"):
        index = Index(config, FakeClock(NOW))
        index.scan()
    assert titles(index.views().all) == ["P4", "P3", "P2", "P1"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("has no archive numbers" in r.getMessage() for r in caplog.records)
