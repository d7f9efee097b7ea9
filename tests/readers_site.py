"""A site for the readers' side (index page, OPML, browser view, tag feeds,
paging, query options): each post is named after the case it pins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import BASE_CONFIG, make_site, post

FEEDS_URL = "https://feeds.example.com"
CONFIG: dict[str, Any] = {
    **BASE_CONFIG,
    "feeds_url": FEEDS_URL,
    "categories": {
        **BASE_CONFIG["categories"],
        # Three posts with a limit of 2: two pages.
        "caijing": {"title": "财经", "description": "宏观经济与金融市场", "limit": 2,
                    "link": "https://news.example.com/category/caijing.html"},
        "escaping": {"title": 'Q&A <script>alert("x")</script>',
                     "description": "<b>not bold</b>"},
    },
}
POSTS = {
    "kunmingribao/2022-03-21-anning-industrial-park.md": post(
        "安宁打造招商引资强磁场", "2022-03-21 06:00:08 +0800", tags="[昆明, 经济]",
        body="<p>安宁工业园区实地考察。</p>"),
    "kunmingribao/2022-03-22-simplified-chinese-title.md": post(
        "简体中文测试：汉字与发展", "2022-03-22 10:00:00 +0800", tags="[昆明]",
        body='<p>这里是简体字正文。<a href="https://news.example.com/汉字">汉字链接</a></p>'),
    "caijing/2022-03-23-mixed-case-title.md": post(
        "Apple 发布 MacBook 新品", "2022-03-23 09:00:00 +0800", categories="caijing",
        tags="[科技, AI]"),
    "caijing/2022-03-24-banana-prices.md": post(
        "BANANA 价格上涨", "2022-03-24 09:00:00 +0800", categories="caijing", tags="[经济]"),
    "caijing/2022-03-25-advert-in-title.md": post(
        "广告：理财产品推荐", "2022-03-25 09:00:00 +0800", categories="caijing",
        tags="[广告]"),
    # 12:00 UTC is 08:00 in New York that day: EDT (-04:00), DST began at 07:00 UTC.
    "world/2022-03-13-new-york-morning.md": post(
        "New York morning news", "2022-03-13 12:00:00 +0000", categories="world",
        tags="[New York]"),
    "escaping/2022-03-20-markup-in-title.md": post(
        "Title with <em>markup</em> & ampersand", "2022-03-20 08:00:00 +0800",
        # A tag with "/" has no URL (a server sees %2F as "/"): it is not listed.
        categories="escaping", tags='["<tag>", "TCP/IP"]'),
}


def readers_site(root: Path, **overrides: Any) -> Path:
    return make_site(root, POSTS, config={**CONFIG, **overrides})
