"""The same wire story from several sources: a reprint joins the first copy's
story at collection. (What the feeds show of a story: test_story_once.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Serve, wait_for
from test_feedcheck import feedcheck  # noqa: F401,F811 - the fixture
from test_upstream import FAST, NOW, site_with, stored
from upstream_support import Route, Upstream, upstream

from feedsvc.config import Config
from feedsvc.index.sources import store_for
from feedsvc.upstream.collector import Collector
from feedsvc.upstream.fetch import Fetcher

ATOM = "{http://www.w3.org/2005/Atom}"
WIRE = ("今年一季度，云南省咖啡出口量达到三万吨，同比增长百分之二十，出口额创历史新高。"
        "普洱、保山、临沧等主产区积极拓展海外市场，与十二家海外采购商签订了长期供货协议。"
        "专家表示，精深加工是提升咖啡附加值的关键，云南已建成二十条咖啡生产线。")
OTHER = ("今年，云南省咖啡种植面积扩大到一百五十万亩，普洱、保山等地新建精品咖啡庄园十余座，"
         "咖啡产业链不断延伸，带动三万户农户增收，咖啡节吸引游客五万人次。")


def feed(title: str, items: list[tuple[str, str, str, str]]) -> Route:
    body = "".join(
        f"<item><title>{t}</title><link>https://{guid}.example/a.html</link>"
        f"<guid isPermaLink=\"false\">{guid}</guid><pubDate>{date}</pubDate>"
        f"<category>咖啡</category><description>&lt;p&gt;{text}&lt;/p&gt;</description></item>"
        for guid, t, date, text in items)
    return Route(f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>
<title>{title}</title><link>https://x.example/</link><description>x</description>{body}
</channel></rss>""".encode())


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/xinhua.xml"] = feed("新华社", [
            ("xinhua-1", "云南咖啡出口创新高", "Mon, 21 Mar 2022 08:00:00 +0800",
             "新华社昆明3月21日电 " + WIRE + "（完）")])
        server.routes["/kmrb.xml"] = feed("昆明日报", [
            ("kmrb-1", "云南咖啡出口量创历史新高", "Mon, 21 Mar 2022 10:30:00 +0800",
             "本报讯 " + WIRE + "（责任编辑：王五）来源：新华社"),
            ("kmrb-2", "云南咖啡种植面积扩大", "Mon, 21 Mar 2022 11:00:00 +0800",
             "本报讯 " + OTHER)])
        yield server


def site(tmp_path: Path, up: Upstream, **extra: Any) -> Config:
    # kunmingribao's source comes first in the config: it wins ties.
    return site_with(tmp_path, {"kunmingribao": [up.url + "/kmrb.xml"],
                                "world": [up.url + "/xinhua.xml"]}, **extra)


def collect(config: Config) -> None:
    collector = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
    assert all(r.error is None for r in collector.run(collector.sources()))


def titles(server: Any, path: str) -> list[str]:
    return [i["title"] for i in server.get(path).json()["items"]]


def test_reprints_join_the_first_copy_s_story(tmp_path: Path, up: Upstream) -> None:
    config = site(tmp_path, up)
    collect(config)
    posts = stored(config)
    # kmrb is collected first (config order); the Xinhua copy joins its story.
    assert posts["kmrb-1"].story is None
    assert posts["xinhua-1"].story == "kmrb-1"
    assert posts["kmrb-2"].story is None            # same topic, another story
    # The signatures are in the index, for the next pass (and another instance).
    remembered = {e["guid"]: e["story"] for e in store_for(config).story_entries(10)}
    assert remembered["kmrb-1"] == "kmrb-1" and remembered["xinhua-1"] == "kmrb-1"


def test_collected_reprints_are_shown_once_site_wide(tmp_path: Path, up: Upstream,
                                                     serve: Serve) -> None:
    config = site(tmp_path, up)
    collect(config)
    server = serve(config.path)
    # The index the collector brought up to date before it stored is ready: the
    # server's leader reads the new files in its catch-up right after the start.
    wait_for(lambda: titles(server, "/feeds/kunmingribao.json") == ["云南咖啡种植面积扩大",
                                                                    "云南咖啡出口量创历史新高"])
    assert titles(server, "/feeds/world.json") == ["云南咖啡出口创新高"]
    # The earliest-dated copy (Xinhua's, 08:00) stands for the story, though the
    # Kunming copy was collected first and is the one the story is named after.
    for path in ("/feeds/all.json", "/tags/%E5%92%96%E5%95%A1.json"):
        assert titles(server, path) == ["云南咖啡种植面积扩大", "云南咖啡出口创新高"]
        item = server.get(path).json()["items"][1]
        assert item["_feedsvc"] == {"copies": ["https://kmrb-1.example/a.html"]}


def test_switched_off_every_copy_is_shown(tmp_path: Path, up: Upstream) -> None:
    config = site(tmp_path, up, near_duplicates=False)
    collect(config)
    assert stored(config)["xinhua-1"].story is None


def test_a_high_threshold_keeps_them_apart(tmp_path: Path, up: Upstream) -> None:
    config = site(tmp_path, up, near_duplicates={"threshold": 0.99})
    collect(config)
    assert stored(config)["xinhua-1"].story is None
