"""`feedsvc build --out DIR` into a folder it built before: only files whose
bytes change are written, files it no longer produces are removed, files of
the user's own are never touched, and the result is always byte-identical
to a build from scratch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from support import make_site, post, wait_for

from feedsvc.config import load_config
from feedsvc.export import exporter, manifest_path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def build(config: Path, out: Path):  # type: ignore[no-untyped-def]
    return exporter(load_config(config), out).build()


def fresh(config: Path, tmp: Path) -> dict[str, bytes]:
    out = tmp / f"fresh-{time.monotonic_ns()}"
    build(config, out)
    return tree(out)


def test_a_second_build_writes_nothing(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    out = tmp_path / "out"
    first = build(config, out)
    assert first.written == first.files
    assert manifest_path(load_config(config), out).is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in first.files}
    second = build(config, out)
    assert second.written == [] and second.removed == []
    assert sorted(second.files) == sorted(first.files)
    assert {p: p.stat().st_mtime_ns for p in second.files} == mtimes
    # The index page, OPML and the tag list's one page, compared by their bytes.
    assert second.rendered == 3


def test_a_new_post_rewrites_only_the_files_it_changes(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    out = tmp_path / "out"
    build(config, out)
    before = tree(out)
    (config.parent / "_posts" / "2022-04-01-new-world.md").write_text(
        post("New in the world", "2022-04-01 08:00:00 -0400", "world", tags="[新标签, 昆明]"),
        encoding="utf-8")
    report = build(config, out)
    after = tree(out)
    assert after == fresh(config, tmp_path)
    changed = {k for k in after if before.get(k) != after[k]}
    assert {p.relative_to(out).as_posix() for p in report.written} == changed
    assert "feeds/world.atom" in changed and "tags/新标签.json" in changed
    assert "feeds/kunmingribao.atom" not in changed and "feeds/kunmingribao.rss" not in changed
    assert report.removed == []
    assert not [p for p in out.rglob("*.tmp")]


def test_files_no_longer_produced_are_removed_but_never_the_users_own(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    added = config.parent / "_posts" / "2022-04-02-lonely-tag.md"
    added.write_text(post("Lonely", "2022-04-02 08:00:00 +0800", "kunmingribao", tags="[独一]"),
                     encoding="utf-8")
    out = tmp_path / "out"
    build(config, out)
    assert (out / "tags" / "独一.rss").is_file()
    (out / "robots.txt").write_text("User-agent: *\n")
    (out / "tags" / "mine.rss").write_text("my own feed\n")
    added.unlink()
    report = build(config, out)
    assert not (out / "tags" / "独一.rss").exists()
    removed = {p.relative_to(out).as_posix() for p in report.removed}
    # The tag's feeds, and the last page of feeds that got one page shorter.
    assert {"tags/独一.rss", "tags/独一.atom", "tags/独一.json"} <= removed
    assert not removed & set(fresh(config, tmp_path))
    assert (out / "robots.txt").read_text() == "User-agent: *\n"
    assert (out / "tags" / "mine.rss").read_text() == "my own feed\n"
    assert tree(out) == {**fresh(config, tmp_path), "robots.txt": b"User-agent: *\n",
                         "tags/mine.rss": b"my own feed\n"}


def test_a_users_file_where_a_new_feed_goes_is_left_alone(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    out = tmp_path / "out"
    build(config, out)
    (out / "tags" / "后来.rss").write_text("mine\n")
    (config.parent / "_posts" / "2022-04-03-later.md").write_text(
        post("Later", "2022-04-03 08:00:00 +0800", "kunmingribao", tags="[后来]"), encoding="utf-8")
    report = build(config, out)
    assert (out / "tags" / "后来.rss").read_text() == "mine\n"
    assert [p.name for p in report.kept_own] == ["后来.rss"]
    assert (out / "tags" / "后来.atom").is_file()


def test_a_produced_file_edited_by_hand_is_written_again(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    out = tmp_path / "out"
    build(config, out)
    good = (out / "feeds" / "empty.rss").read_bytes()
    (out / "feeds" / "empty.rss").write_bytes(b"broken")
    (out / "feeds" / "world.json").unlink()
    report = build(config, out)
    assert (out / "feeds" / "empty.rss").read_bytes() == good
    assert {p.name for p in report.written} == {"empty.rss", "world.json"}


def test_build_prints_what_it_did(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "feedsvc", "build", "--config", str(config), "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    n = len(tree(out))
    assert f"{n} files in {out}: {n} written, 0 unchanged, 0 removed" in first
    assert f"{n} files in {out}: 0 written, {n} unchanged, 0 removed" in again


def test_watch_keeps_the_folder_current(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    out = tmp_path / "out"
    log = (tmp_path / "watch.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "feedsvc", "build", "--config", str(config),
                             "--out", str(out), "--watch"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: manifest_path(load_config(config), out).is_file(), 60)
        (config.parent / "_posts" / "2022-04-04-watched.md").write_text(
            post("Watched post", "2022-04-04 08:00:00 +0800", "kunmingribao"), encoding="utf-8")
        wait_for(lambda: "Watched post" in (out / "feeds" / "kunmingribao.atom").read_text(), 30)
        wait_for(lambda: tree(out) == fresh(config, tmp_path), 30)
    finally:
        proc.terminate()
        proc.wait(10)
    lines = [x for x in (tmp_path / "watch.log").read_text().splitlines() if " files in " in x]
    assert len(lines) >= 2 and " 0 removed" in lines[-1]
