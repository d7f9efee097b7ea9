"""What the fuzzers check (scripts/fuzz.py), one function per target, each
taking raw bytes: the same functions replay the regression cases the fuzzers
found (tests/fixtures/fuzz/<target>/, tests/test_fuzz_regressions.py).

The property is the contract of each stage for input it does not control:
- post reader: a post file is a Post or a PostError — nothing else escapes,
  and a Post's dates lie in range and can be written in every format;
- date normaliser: a string is an aware datetime in range, or a DateError;
  the Jekyll form it is stored in reads back as the same instant;
- config loader: a config file is a Config or a ConfigError naming the file;
- upstream parsers: a body is items or a FetchError, and every item becomes a
  post text that the post reader accepts (nothing collected is then skipped).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from feedsvc import dates
from feedsvc.config import Config, load_config
from feedsvc.errors import ConfigError, FetchError, PostError
from feedsvc.posts import Post, parse_post
from feedsvc.upstream.collector import Item, parse_feed, post_text

SITE_CONFIG = """\
site: {title: 测试, url: "https://news.example.com", timezone: Asia/Shanghai}
categories:
  kunmingribao: {title: 昆明日报新闻, timezone: Asia/Shanghai}
  world: {title: World, timezone: America/New_York}
"""
STAT = os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0))
ZONES = ("Asia/Shanghai", "America/New_York", "UTC", "Asia/Kathmandu", "Pacific/Kiritimati")


@cache
def _site() -> Path:
    root = Path(tempfile.mkdtemp(prefix="feedsvc-fuzz-"))
    (root / "_posts").mkdir()
    (root / "config.yaml").write_text(SITE_CONFIG, encoding="utf-8")
    return root


@cache
def site_config() -> Config:
    return load_config(_site() / "config.yaml")


def _writable(value: dt.datetime) -> None:
    assert value.tzinfo is not None and dates.MIN_YEAR <= value.year <= dates.MAX_YEAR
    value.astimezone(dt.UTC)
    for zone in ZONES:
        value.astimezone(dates.zone(zone))
    value.strftime("%a, %d %b %Y %H:%M:%S %z")      # how feedgen writes RSS dates
    dates.rfc3339(value)


def post_reader(data: bytes) -> None:
    name = "kunmingribao/_posts/2022-03-21-fuzz.md"
    try:
        post = parse_post(name, data, STAT, site_config())
    except PostError:
        return
    assert isinstance(post, Post)
    _writable(post.date)
    _writable(post.updated)


def date_normaliser(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    zone = dates.zone(ZONES[len(data) % len(ZONES)])
    try:
        value = dates.normalise(text, zone)
    except dates.DateError:
        return
    _writable(value)
    stored = dates.jekyll(value)
    assert dates.normalise(stored, zone) == value, (text, stored)


def config_loader(data: bytes) -> None:
    path = _site() / "fuzz-config.yaml"
    path.write_bytes(data)
    try:
        config = load_config(path)
    except ConfigError as e:
        assert str(path) in str(e)
        return
    assert isinstance(config, Config)


def upstream_parsers(data: bytes) -> None:
    config = site_config()
    cat = config.categories["kunmingribao"]
    for ctype in ("application/rss+xml", "application/feed+json"):
        try:
            parsed = parse_feed(data, ctype, "https://upstream.example/feed", dates.zone("Asia/Shanghai"))
        except FetchError:
            continue
        for item in parsed.items[:20]:
            _becomes_a_post(item, cat, config)


def _becomes_a_post(item: Item, cat: object, config: Config) -> None:
    from feedsvc.config import Source

    date = item.date or dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
    _writable(date)
    text = post_text(item, date, cat, Source("https://upstream.example/feed"))  # type: ignore[arg-type]
    raw = text.encode("utf-8")
    try:
        parse_post(f"{cat.slug}/_posts/2022-03-21-item.md", raw, STAT, config)  # type: ignore[attr-defined]
    except PostError as e:
        raise AssertionError(f"collected item would be skipped: {e.reason}") from e


TARGETS: dict[str, Callable[[bytes], None]] = {
    "post_reader": post_reader,
    "date_normaliser": date_normaliser,
    "config_loader": config_loader,
    "upstream_parsers": upstream_parsers,
}
