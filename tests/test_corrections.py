"""Upstream corrections reach our copy in place (same file, same id, `updated:`
set), unless the file was edited or deleted by hand since we wrote it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
import yaml
from support import running, wait_for
from test_upstream import collect, site_with, stored
from upstream_support import Route, Upstream, upstream

from feedsvc.config import Config
from feedsvc.upstream.collector import load_state

GUID = "xinhua-2022-0321-001"


def rss(body: str, title: str = "云南咖啡出口创新高", updated: str | None = None) -> Route:
    """A one-item RSS feed (an Atom <updated> when given, as some RSS feeds carry)."""
    extra = f"<atom:updated>{updated}</atom:updated>" if updated else ""
    doc = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>新华社 云南</title><link>https://upstream.example/</link><description>x</description>
<item><title>{title}</title><link>https://upstream.example/coffee.html</link>
<guid isPermaLink="false">{GUID}</guid><pubDate>Mon, 21 Mar 2022 09:00:00 +0800</pubDate>
{extra}<description>&lt;p&gt;{body}&lt;/p&gt;</description></item>
</channel></rss>"""
    # No validators: every pass reads the items again (a 304 would say nothing).
    return Route(doc.encode("utf-8"), etag=False, last_modified=None)


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/rss.xml"] = rss("今年一季度咖啡出口三万吨。")
        yield server


def setup(tmp_path: Path, up: Upstream) -> tuple[Config, Path]:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    assert collect(config)["rss.xml"].new == 1
    return config, Path(stored(config)[GUID].path)


def meta(path: Path) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])
    return data


def test_changed_text_updates_the_post_in_place(tmp_path: Path, up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    before = stored(config)[GUID]
    up.routes["/rss.xml"] = rss("今年一季度咖啡出口三点二万吨（更正）。")
    result = collect(config)["rss.xml"]
    assert (result.new, result.updated, result.unchanged) == (0, 1, 0)
    assert "1 updated" in result.line()
    after = stored(config)[GUID]
    assert after.path == before.path and after.guid == before.guid and after.url == before.url
    assert after.date == before.date
    assert meta(path)["updated"] == "2026-01-10 12:00:00 +0000"   # the collector's clock
    assert "三点二万吨（更正）" in path.read_text(encoding="utf-8")
    assert len(list(path.parent.iterdir())) == 1


def test_a_changed_title_keeps_the_file_and_the_id(tmp_path: Path, up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    before = stored(config)[GUID]
    up.routes["/rss.xml"] = rss("今年一季度咖啡出口三万吨。", title="云南咖啡出口再创新高")
    assert collect(config)["rss.xml"].updated == 1
    after = stored(config)[GUID]
    assert (after.path, after.url, after.guid) == (before.path, before.url, before.guid)
    assert after.title == "云南咖啡出口再创新高"


def test_a_newer_updated_updates_and_sets_it(tmp_path: Path, up: Upstream) -> None:
    up.routes["/rss.xml"] = rss("咖啡。", updated="2022-03-21T10:00:00+08:00")
    config, path = setup(tmp_path, up)
    assert collect(config)["rss.xml"].unchanged == 1     # the same updated: nothing to do
    up.routes["/rss.xml"] = rss("咖啡。", updated="2022-03-22T08:30:00+08:00")
    assert collect(config)["rss.xml"].updated == 1
    assert meta(path)["updated"] == "2022-03-22 08:30:00 +0800"
    assert stored(config)[GUID].updated.isoformat() == "2022-03-22T08:30:00+08:00"


def test_nothing_changed_leaves_the_file_alone(tmp_path: Path, up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    stat = path.stat()
    result = collect(config)["rss.xml"]
    assert (result.updated, result.unchanged) == (0, 1)
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_ino == stat.st_ino


def test_a_touched_file_is_not_a_hand_edit(tmp_path: Path, up: Upstream) -> None:
    """The hash of what we wrote decides, not the mtime (a checkout or rsync moves it)."""
    config, path = setup(tmp_path, up)
    os.utime(path, (1_900_000_000, 1_900_000_000))
    up.routes["/rss.xml"] = rss("更正后的正文。")
    assert collect(config)["rss.xml"].updated == 1
    assert "更正后的正文" in path.read_text(encoding="utf-8")


def test_a_hand_edit_is_never_overwritten(tmp_path: Path, up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    edited = path.read_text(encoding="utf-8").replace("三万吨", "三万吨（编辑部核实）")
    path.write_text(edited, encoding="utf-8")
    up.routes["/rss.xml"] = rss("今年一季度咖啡出口三点二万吨（更正）。")
    result = collect(config)["rss.xml"]
    assert (result.updated, result.kept) == (0, 1)
    assert "edited here (kept)" in result.line()
    assert path.read_text(encoding="utf-8") == edited
    # Reported once per upstream change, not on every pass.
    again = collect(config)["rss.xml"]
    assert (again.kept, again.unchanged) == (0, 1)
    up.routes["/rss.xml"] = rss("第二次更正。")
    assert collect(config)["rss.xml"].kept == 1
    assert path.read_text(encoding="utf-8") == edited


def test_a_hand_deleted_post_is_never_re_created(tmp_path: Path, up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    path.unlink()
    up.routes["/rss.xml"] = rss("今年一季度咖啡出口三点二万吨（更正）。")
    result = collect(config)["rss.xml"]
    assert (result.new, result.updated) == (0, 0)
    assert not path.exists() and not list(path.parent.iterdir())


def test_the_record_is_kept_with_the_source_state(tmp_path: Path, up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    state = load_state(config, "kunmingribao", up.url + "/rss.xml")
    written = state.written[GUID]
    assert written["file"] == path.relative_to(config.posts_dir).as_posix()
    assert len(written["sha256"]) == 64
    assert "written" not in state.public()      # /status stays short


def test_the_served_feed_shows_the_correction_under_the_same_id(tmp_path: Path,
                                                                up: Upstream) -> None:
    config, path = setup(tmp_path, up)
    with running(config.path) as server:
        first = feedparser.parse(server.get("/feeds/kunmingribao.atom").content).entries[0]
        up.routes["/rss.xml"] = rss("更正：出口三点二万吨。")
        collect(config)

        def corrected() -> object:
            entries = feedparser.parse(server.get("/feeds/kunmingribao.atom").content).entries
            return entries if "三点二万吨" in entries[0].content[0].value else None

        entries = wait_for(corrected, timeout=15)
        assert len(entries) == 1 and entries[0].id == first.id  # type: ignore[arg-type]
        # The running server polls the source too, with its own (real) clock:
        # whichever pass saw the correction first wrote `updated:`, and the
        # feed says what the file says.
        written = dt.datetime.strptime(str(meta(path)["updated"]), "%Y-%m-%d %H:%M:%S %z")
        assert dt.datetime.fromisoformat(entries[0].updated) == written  # type: ignore[index]
        assert written > dt.datetime.fromisoformat(first.published)  # type: ignore[arg-type]
