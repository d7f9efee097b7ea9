"""Issue 15, findings 9 and 12 (watcher side), against a real `feedsvc serve`:
posts_dir removed and restored, rename-swapped, or a post written in two halves."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from support import Server, make_site, post, running, wait_for

POSTS = {f"2022-03-{d:02d}-p{d}.md": post(f"第{d}条", f"2022-03-{d:02d} 06:00:00 +0800")
         for d in range(10, 22)}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cfg = make_site(tmp_path / "site", POSTS)
    with running(cfg, workers=2) as server:
        yield server, cfg.parent / "_posts"


def titles(server: Server) -> set[str]:
    return {e.title for e in feedparser.parse(server.get("/feeds/kunmingribao.atom").content).entries}


def every_worker(server: Server, check: object, tries: int = 8) -> bool:
    # Each request may reach either worker; each has its own watcher.
    return all(check(titles(server)) for _ in range(tries))  # type: ignore[operator]


def test_posts_dir_removed_and_restored(served: tuple[Server, Path], tmp_path: Path) -> None:
    server, posts = served
    everything = {f"第{d}条" for d in range(10, 22)}
    wait_for(lambda: every_worker(server, lambda t: t == everything), timeout=20)
    backup = tmp_path / "backup"
    shutil.copytree(posts, backup)
    shutil.rmtree(posts)
    wait_for(lambda: every_worker(server, lambda t: t == set()), timeout=20)
    shutil.copytree(backup, posts)
    wait_for(lambda: every_worker(server, lambda t: t == everything), timeout=20)
    # And the restored folder is watched: a post added now shows up too.
    (posts / "2022-03-22-later.md").write_text(post("后来", "2022-03-22 06:00:00 +0800"),
                                              encoding="utf-8")
    wait_for(lambda: every_worker(server, lambda t: "后来" in t), timeout=20)


def test_posts_dir_rename_swapped(served: tuple[Server, Path], tmp_path: Path) -> None:
    server, posts = served
    release = tmp_path / "site" / "_posts.new"
    shutil.copytree(posts, release)
    (release / "2022-03-22-deployed.md").write_text(post("新版", "2022-03-22 06:00:00 +0800"),
                                                    encoding="utf-8")
    posts.rename(tmp_path / "site" / "_posts.old")
    release.rename(posts)
    wait_for(lambda: every_worker(server, lambda t: "新版" in t and len(t) == 13), timeout=20)
    (posts / "2022-03-23-after.md").write_text(post("部署后", "2022-03-23 06:00:00 +0800"),
                                              encoding="utf-8")
    wait_for(lambda: every_worker(server, lambda t: "部署后" in t), timeout=20)
    # The old folder is not watched any more: what happens there is not served.
    (tmp_path / "site" / "_posts.old" / "2022-03-24-stale.md").write_text(
        post("旧目录", "2022-03-24 06:00:00 +0800"), encoding="utf-8")
    time.sleep(3)
    assert every_worker(server, lambda t: "旧目录" not in t)


def test_a_post_written_in_two_halves_is_never_served_half_written(
        served: tuple[Server, Path]) -> None:
    """New posts, each written by a slow copy. (A rewrite of an existing post
    also depends on the body being read with its metadata: finding 7, the
    index work; the catch-up rescan when a watch starts reads what it finds,
    so the watchers are given their first quiet moment first.)"""
    server, posts = served
    time.sleep(2)
    seen: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            feed = feedparser.parse(server.get("/feeds/kunmingribao.atom").content)
            seen.extend(e.content[0].value for e in feed.entries if e.title.startswith("两半"))
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        for n in range(3):
            raw = post(f"两半{n}", f"2022-03-25 06:00:0{n} +0800",
                       body=f"<p>FIRST-{n}</p>\n" + "<p>正文。</p>\n" * 200
                       + f"<p>SECOND-{n}</p>").encode()
            with open(posts / f"2022-03-25-halves-{n}.md", "wb") as fh:   # not atomic
                fh.write(raw[:len(raw) // 2])
                fh.flush()
                time.sleep(0.2)       # a slow copy; less than the watcher's settle time (0.5 s)
                fh.write(raw[len(raw) // 2:])
            wait_for(lambda n=n: any(f"SECOND-{n}" in s for s in seen), timeout=20)
    finally:
        stop.set()
        poller.join()
    half_written = [s[:14] + "…" + s[-20:] for s in seen if "SECOND-" not in s]
    assert half_written == []
