"""RSSHub's query options over HTTP: filter/filterout as RE2 patterns, the
filter_<field> and filterout_<field> options, filter_time, filter_case_sensitive,
brief, and the window of newest entries that filters look at."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from support import BASE_CONFIG, Server, make_site, post, running
from test_feedcheck import feedcheck  # noqa: F401,F811 - the fixture

NOW = dt.datetime.now(dt.UTC)
LONG_BODY = "<p>第一段：5G 基站建设。</p><p>" + "农业现代化" * 60 + "</p>"


def at(hours_ago: float) -> str:
    return (NOW - dt.timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M:%S +0000")


POSTS = {
    "kunmingribao/2026-01-01-five-g.md": post(
        "昆明 5G 网络覆盖全市", at(1), tags="[科技]", body=LONG_BODY),
    "kunmingribao/2026-01-02-agriculture.md": post(
        "高原特色农业丰收", at(30), tags="[农业, 经济]",
        body="<p>今年的收成很好。</p>", description="稻谷与蔬菜产量创新高"),
    "kunmingribao/2026-01-03-mixed-case.md": post(
        "Apple Store opens in Kunming", at(50), tags="[Tech]",
        body="<p>A new APPLE store.</p>"),
    "kunmingribao/2026-01-04-advert.md": post(
        "广告：理财产品推荐", at(72), tags="[广告]", body="<p>年化收益率 5%。</p>"),
    # Forty a's and a b: `(a+)+$` takes minutes on this in Python's re.
    "kunmingribao/2026-01-05-backtracking.md": post(
        "a" * 40 + "b", at(100), tags="[测试]"),
}
CONFIG = {**BASE_CONFIG, "site": {**BASE_CONFIG["site"], "author": {"name": "昆明日报编辑部"}},
          "max_limit": 50, "max_age": 300}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(make_site(tmp_path_factory.mktemp("rsshub") / "site", POSTS, config=CONFIG)) as s:
        yield s


def titles(server: Server, query: str, path: str = "/feeds/kunmingribao.atom") -> list[str]:
    resp = server.get(f"{path}?{query}")
    assert resp.status_code == 200, resp.text
    return [e.title for e in feedparser.parse(resp.content).entries]


def error(server: Server, query: str) -> str:
    resp = server.get("/feeds/kunmingribao.rss?" + query)
    assert resp.status_code == 400, resp.text
    return resp.text


# -- filter / filterout as regular expressions ----------------------------------
def test_rsshub_regex_alternation_works(server: Server) -> None:
    """The form RSSHub's users write (`5G|农业`) gave 0 items before."""
    assert titles(server, "filter=5G|农业") == ["昆明 5G 网络覆盖全市", "高原特色农业丰收"]


def test_a_comma_still_separates_alternatives(server: Server) -> None:
    assert titles(server, "filter=5G,农业") == titles(server, "filter=5G|农业")


def test_a_comma_inside_a_repetition_is_part_of_the_pattern(server: Server) -> None:
    assert titles(server, "filter=^a{30,45}b$") == ["a" * 40 + "b"]


def test_filter_matches_the_description(server: Server) -> None:
    # In the summary (front-matter description) only, not the title or tags.
    assert titles(server, "filter=稻谷") == ["高原特色农业丰收"]


def test_filter_matches_categories_and_tags(server: Server) -> None:
    assert titles(server, "filter=^经济$") == ["高原特色农业丰收"]
    assert len(titles(server, "filter=^kunmingribao$")) == len(POSTS)


def test_filterout_drops_matches(server: Server) -> None:
    kept = titles(server, "filterout=广告|^a%2Bb$|Apple")
    assert kept == ["昆明 5G 网络覆盖全市", "高原特色农业丰收"]


def test_a_pattern_re2_refuses_is_400_saying_so(server: Server) -> None:
    text = error(server, "filter=(a)\\1")
    assert "filter" in text and "RE2" in text and "back-references" in text
    assert "look-around" in error(server, "filterout=(?=x)")
    assert "missing )" in error(server, "filter_title=(a")


def test_catastrophic_pattern_is_answered_quickly(server: Server) -> None:
    """`(a+)+$` backtracks exponentially in Python's re on forty a's and a b
    (bench/filters_bench.py measures both engines); RE2 runs in linear time."""
    start = time.monotonic()
    resp = server.get("/feeds/kunmingribao.rss?filter=(a%2B)%2B$&filterout=(x%2Bx%2B)%2By")
    elapsed = time.monotonic() - start
    assert resp.status_code == 200
    assert feedparser.parse(resp.content).entries == []
    assert elapsed < 2, f"{elapsed:.2f} s"


# -- filter_case_sensitive -----------------------------------------------------
def test_case_insensitive_by_default(server: Server) -> None:
    assert titles(server, "filter=apple store") == ["Apple Store opens in Kunming"]


def test_case_sensitive_through_the_engine_flag(server: Server) -> None:
    assert titles(server, "filter=apple store&filter_case_sensitive=true") == []
    assert titles(server, "filter=Apple Store&filter_case_sensitive=true") == [
        "Apple Store opens in Kunming"]
    # \W stays "not a word character" under either setting: the pattern is not folded.
    assert titles(server, "filter_title=Apple\\WStore&filter_case_sensitive=false") == [
        "Apple Store opens in Kunming"]


def test_case_sensitive_applies_to_filterout_and_fields(server: Server) -> None:
    everything = titles(server, "")
    assert titles(server, "filterout=APPLE STORE&filter_case_sensitive=true") == everything
    assert len(titles(server, "filterout=APPLE STORE")) == len(everything) - 1
    assert titles(server, "filterout_title=APPLE&filter_case_sensitive=1") == everything
    assert len(titles(server, "filterout_title=APPLE")) == len(everything) - 1


def test_invalid_case_sensitive_is_400(server: Server) -> None:
    assert "filter_case_sensitive must be true or false" in error(
        server, "filter=a&filter_case_sensitive=maybe")


# -- filter_<field> / filterout_<field> ----------------------------------------
def test_filter_title_looks_at_the_title_only(server: Server) -> None:
    assert titles(server, "filter_title=农业") == ["高原特色农业丰收"]
    # 农业 is also in the 5G post's body and the agriculture post's tags.
    assert titles(server, "filter_title=科技") == []


def test_filter_description(server: Server) -> None:
    assert titles(server, "filter_description=基站") == ["昆明 5G 网络覆盖全市"]
    assert titles(server, "filter_description=5G") == ["昆明 5G 网络覆盖全市"]


def test_filter_author(server: Server) -> None:
    assert len(titles(server, "filter_author=编辑部")) == len(POSTS)
    assert titles(server, "filter_author=新华社") == []


def test_filter_category_matches_categories_and_tags(server: Server) -> None:
    assert titles(server, "filter_category=^tech$") == ["Apple Store opens in Kunming"]
    assert titles(server, "filter_category=农业|广告") == ["高原特色农业丰收", "广告：理财产品推荐"]


def test_field_filters_must_all_match(server: Server) -> None:
    assert titles(server, "filter_title=农业&filter_category=经济") == ["高原特色农业丰收"]
    assert titles(server, "filter_title=农业&filter_category=科技") == []


def test_filterout_fields_drop_if_any_matches(server: Server) -> None:
    kept = titles(server, "filterout_title=广告&filterout_category=^测试$&filterout_description=APPLE")
    assert kept == ["昆明 5G 网络覆盖全市", "高原特色农业丰收"]
    assert titles(server, "filterout_author=编辑部") == []


def test_filter_and_filterout_combine(server: Server) -> None:
    assert titles(server, "filter=农业|5G&filterout_title=5G") == ["高原特色农业丰收"]


# -- filter_time ---------------------------------------------------------------
def test_filter_time_keeps_recent_entries(server: Server) -> None:
    # Posts are 1, 30, 50, 72 and 100 hours old; the edge moves by max_age (5 min) at most.
    assert titles(server, f"filter_time={36 * 3600}") == ["昆明 5G 网络覆盖全市", "高原特色农业丰收"]
    assert titles(server, f"filter_time={2 * 3600}") == ["昆明 5G 网络覆盖全市"]
    assert titles(server, "filter_time=60") == []


def test_filter_time_is_part_of_the_self_link_and_stable(server: Server) -> None:
    first = server.get(f"/feeds/kunmingribao.atom?filter_time={36 * 3600}&utm_source=x")
    again = server.get(f"/feeds/kunmingribao.atom?filter_time={36 * 3600}")
    assert first.content == again.content and first.headers["ETag"] == again.headers["ETag"]
    assert f"/feeds/kunmingribao.atom?filter_time={36 * 3600}" in first.text


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "abc", "", "1e3", "9" * 20])
def test_invalid_filter_time_is_400(server: Server, value: str) -> None:
    assert "filter_time must be a whole number" in error(server, f"filter_time={value}")


# -- brief ---------------------------------------------------------------------
def test_brief_gives_the_text_cut_to_n_characters_without_content(server: Server) -> None:
    resp = server.get("/feeds/kunmingribao.json?brief=100&filter_title=5G")
    item = resp.json()["items"][0]
    assert "content_html" not in item
    assert item["summary"] == item["content_text"]
    assert item["summary"].startswith("第一段：5G 基站建设。")
    assert len(item["summary"]) == 101 and item["summary"].endswith("…")
    rss = server.get("/feeds/kunmingribao.rss?brief=100&filter_title=5G")
    assert b"content:encoded" not in rss.content and "农业现代化农业" in rss.text
    atom = feedparser.parse(server.get("/feeds/kunmingribao.atom?brief=100").content)
    assert all("content" not in e for e in atom.entries)


def test_brief_leaves_short_texts_whole(server: Server) -> None:
    item = server.get("/feeds/kunmingribao.json?brief=100&filter_title=Apple").json()["items"][0]
    assert item["summary"] == "A new APPLE store."


@pytest.mark.parametrize("value", ["99", "0", "abc", "", "100001"])
def test_invalid_brief_is_400(server: Server, value: str) -> None:
    assert "brief must be a whole number from 100" in error(server, f"brief={value}")


@pytest.mark.timeout(600)
def test_feeds_with_options_pass_feedcheck(server: Server, tmp_path: Path,
                                           feedcheck: Path) -> None:  # noqa: F811
    paths = []
    for fmt in ("rss", "atom", "json"):
        resp = server.get(f"/feeds/kunmingribao.{fmt}?brief=100&filter=5G|农业&filter_time=360000")
        path = tmp_path / f"options.{fmt}"
        path.write_bytes(resp.content)
        paths.append(path)
    proc = subprocess.run([str(feedcheck), *map(str, paths)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the window ----------------------------------------------------------------
def test_filters_look_at_the_newest_ten_times_max_limit_entries(tmp_path: Path) -> None:
    posts = {f"kunmingribao/2022-01-{day:02d}-p{day}.md": post(
        f"{'旧闻' if day <= 5 else '新闻'} {day}", f"2022-01-{day:02d} 08:00:00 +0800")
        for day in range(1, 26)}
    # max_limit 2: the window is the 20 newest of 25 posts, so days 1-5 are out of it.
    config = make_site(tmp_path / "site", posts, config={**BASE_CONFIG, "max_limit": 2, "limit": 2})
    with running(config) as server:
        assert titles(server, "filter=旧闻") == []
        assert titles(server, "filter=^新闻 6$") == ["新闻 6"]
        # Without a filter the whole history is there, in the archives (2 posts each).
        assert server.get("/feeds/kunmingribao/archive/13.atom").status_code == 200
        assert "旧闻 1" in server.get("/feeds/kunmingribao/archive/1.atom").text


def test_filter_time_edge_moves_with_the_clock_not_only_with_the_posts(tmp_path: Path) -> None:
    """Replayed answers of a filter_time URL expire when its rounded edge moves."""
    from feedsvc.app import create_app
    from feedsvc.config import load_config

    now = [dt.datetime(2022, 1, 10, 12, 0, tzinfo=dt.UTC)]
    posts = {"kunmingribao/2022-01-10-recent.md": post("最近", "2022-01-10 11:00:00 +0000"),
             "kunmingribao/2022-01-09-older.md": post("较早", "2022-01-09 12:30:00 +0000")}
    config = load_config(make_site(tmp_path / "site", posts, config=CONFIG))
    app = create_app(config, watch=False, clock=lambda: now[0])
    url = f"/feeds/kunmingribao.atom?filter_time={86400}"
    with app.test_client() as client:
        def seen() -> list[str]:
            return [e.title for e in feedparser.parse(client.get(url).data).entries]
        assert seen() == ["最近", "较早"]
        first = client.get(url).headers["ETag"]
        now[0] += dt.timedelta(seconds=299)    # the edge, rounded to 300 s, has not moved
        assert client.get(url).headers["ETag"] == first
        now[0] += dt.timedelta(minutes=31)     # the older post is now more than a day old
        assert seen() == ["最近"]
