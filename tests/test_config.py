"""config.yaml → frozen dataclasses; every refusal names the key path and line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from feedsvc.config import Category, Config, Site, load_config
from feedsvc.errors import ConfigError

GOOD = """\
site:
  title: 财经新闻
  url: https://finews.example.com/
  timezone: Asia/Shanghai
  language: zh-CN
  author: {name: 编辑部, email: ed@finews.example.com, uri: https://finews.example.com/about}
feeds_url: https://feeds.example.com
posts_dir: posts
limit: 5
max_age: 120
categories:
  kunmingribao:
    title: 昆明日报新闻
    link: https://finews.example.com/category/kunmingribao.html
    timezone: Asia/Shanghai
    limit: 3
  world:
    title: World
    timezone: America/New_York
    sources:
      - https://upstream.example/rss.xml
      - {url: https://upstream.example/feed.json, every: 1h, tags: [昆明]}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "posts").mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


def test_valid_config_loads_into_frozen_dataclasses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert isinstance(config, Config) and isinstance(config.site, Site)
    assert config.site.url == "https://finews.example.com"      # trailing slash dropped
    assert config.site.author is not None and config.site.author.email == "ed@finews.example.com"
    assert config.feeds_url == "https://feeds.example.com"
    assert config.posts_dir == tmp_path / "posts"               # relative to the config file
    assert config.state_dir == tmp_path / ".feedsvc"
    assert list(config.categories) == ["kunmingribao", "world"]
    world = config.categories["world"]
    assert isinstance(world, Category) and world.timezone == "America/New_York"
    assert [s.url for s in world.sources] == ["https://upstream.example/rss.xml",
                                              "https://upstream.example/feed.json"]
    assert world.sources[1].every == 3600 and world.sources[1].tags == ("昆明",)
    assert config.category_limit("kunmingribao") == 3 and config.category_limit("world") == 5
    assert config.category_max_age("world") == 120
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limit = 9  # type: ignore[misc]


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "site: {title: T, url: https://e.com}\nposts_dir: posts\n"))
    assert config.site.timezone == "UTC"
    assert config.feeds_url == "https://e.com"
    assert config.permalink == "/:categories/:year/:month/:day/:title.html"
    assert (config.limit, config.max_limit, config.max_age, config.summary_length) == (20, 100,
                                                                                       300, 200)
    assert config.categories == {}


def test_shipped_sample_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config.yaml")
    assert config.feeds_url == "http://127.0.0.1:8000"
    assert "kunmingribao" in config.categories


@pytest.mark.parametrize(("case", "text", "key", "line", "words"), [
    ("missing site", "posts_dir: posts\n", "site", None, "is required"),
    ("missing title", "site: {url: https://e.com}\nposts_dir: posts\n", "site.title", 1,
     "is required"),
    ("missing category title",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  a:\n    link: https://e.com/a\n",
     "categories.a.title", 4, "is required"),
    ("unknown top key", "site: {title: T, url: https://e.com}\nposts_dir: posts\nlimt: 3\n",
     "limt", 3, "did you mean 'limit'?"),
    ("unknown category key",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  a:\n    title: A\n"
     "    timzone: UTC\n", "categories.a.timzone", 6, "did you mean 'timezone'?"),
    ("unknown site time zone",
     "site:\n  title: T\n  url: https://e.com\n  timezone: Asia/Shangai\nposts_dir: posts\n",
     "site.timezone", 4, "unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)"),
    ("unknown category time zone",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  a:\n    title: A\n"
     "    timezone: America/New_Yrok\n", "categories.a.timezone", 6,
     "did you mean 'America/New_York'?"),
    ("host zone in disguise",
     "site:\n  title: T\n  url: https://e.com\n  timezone: localtime\nposts_dir: posts\n",
     "site.timezone", 4, "unknown time zone 'localtime'"),
    ("control character in a title",
     "site: {title: \"News\\vDaily\", url: https://e.com}\nposts_dir: posts\n",
     "site.title", 1, "control character U+000B"),
    ("url without scheme", "site: {title: T, url: finews.example.com}\nposts_dir: posts\n",
     "site.url", 1, "absolute http(s) URL"),
    ("ftp url", "site: {title: T, url: 'ftp://e.com'}\nposts_dir: posts\n", "site.url", 1,
     "absolute http(s) URL"),
    ("bad feeds_url", "site: {title: T, url: https://e.com}\nposts_dir: posts\nfeeds_url: /feeds\n",
     "feeds_url", 3, "absolute http(s) URL"),
    ("bad category link",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  a:\n    title: A\n"
     "    link: category/a.html\n", "categories.a.link", 6, "absolute http(s) URL"),
    ("limit not a number", "site: {title: T, url: https://e.com}\nposts_dir: posts\nlimit: many\n",
     "limit", 3, "whole number"),
    ("limit a bool", "site: {title: T, url: https://e.com}\nposts_dir: posts\nlimit: yes\n",
     "limit", 3, "whole number"),
    ("limit over max_limit",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\nmax_limit: 10\nlimit: 11\n",
     "limit", 4, "between 1 and 10"),
    ("title a list", "site: {title: [a, b], url: https://e.com}\nposts_dir: posts\n",
     "site.title", 1, "must be a string"),
    ("categories a list", "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories: [a]\n",
     "categories", 3, "must be a mapping"),
    ("reserved slug all",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  all:\n    title: All\n",
     "categories.all", 4, "reserved"),
    ("slug with a slash",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  a/b:\n    title: A\n",
     "categories.a/b", 4, "letters, digits"),
    ("missing posts_dir folder", "site: {title: T, url: https://e.com}\nposts_dir: nowhere\n",
     "posts_dir", 2, "does not exist"),
    ("permalink not rooted",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\npermalink: :title.html\n",
     "permalink", 3, "must start with '/'"),
    ("bad interval",
     "site: {title: T, url: https://e.com}\nposts_dir: posts\ncategories:\n  a:\n    title: A\n"
     "    sources:\n      - {url: https://u.example/rss, every: soon}\n",
     "categories.a.sources.0.every", 7, "invalid interval"),
    ("bad cache type", "site: {title: T, url: https://e.com}\nposts_dir: posts\ncache: {type: disk}\n",
     "cache.type", 3, "'memory' or 'redis'"),
])
def test_bad_config_names_key_and_line(tmp_path: Path, case: str, text: str, key: str,
                                       line: int | None, words: str) -> None:
    error = refused(tmp_path, text)
    assert error.key == key
    assert error.line == line
    assert words in error.reason
    where = f"config.yaml:{line}: " if line else "config.yaml: "
    assert where + key in str(error)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    error = refused(tmp_path, "site:\n  title: [unclosed\n  url: https://e.com\n")
    assert "invalid YAML" in error.reason and error.line is not None


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                      strict=True))
    error = refused(tmp_path, bomb)
    assert "aliases" in error.reason


@pytest.mark.parametrize("command", ["check", "build", "serve"])
def test_commands_exit_2_on_a_bad_config(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, "site:\n  title: T\n  url: https://e.com\n  timezone: Asia/Shangai\n"
                           "posts_dir: posts\n")
    extra = ["--out", str(tmp_path / "out")] if command == "build" else []
    proc = subprocess.run([sys.executable, "-m", "feedsvc", command, "--config", str(path), *extra],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "site.timezone" in proc.stderr and "config.yaml:4" in proc.stderr
    assert "Asia/Shanghai" in proc.stderr
    assert not (tmp_path / "out").exists()


# One duration syntax for every duration key: whole seconds, or a number with s/m/h/d.
DURATION_SITE = "site: {title: T, url: https://e.com}\nposts_dir: posts\n"


@pytest.mark.parametrize(("value", "seconds"), [
    ("300", 300), ("0", 0), ("'300'", 300), ("90s", 90), ("5m", 300), ("1h", 3600),
    ("1d", 86400), ("' 2m '", 120),
])
def test_every_duration_key_takes_seconds_or_a_unit(tmp_path: Path, value: str,
                                                    seconds: int) -> None:
    text = (DURATION_SITE + f"max_age: {value}\ncategories:\n  a:\n    title: A\n"
            f"    max_age: {value}\n    sources:\n"
            f"      - {{url: https://u.example/rss, every: {value}}}\n")
    if seconds == 0:   # a source is polled at least every second
        assert refused(tmp_path, text).key == "categories.a.sources.0.every"
        return
    config = load_config(write(tmp_path, text))
    assert config.max_age == config.category_max_age("a") == seconds
    assert config.categories["a"].sources[0].every == seconds


@pytest.mark.parametrize(("key_text", "key", "words"), [
    ("max_age: 5 minutes\n", "max_age", "invalid interval '5 minutes'"),
    ("max_age: 2d\n", "max_age", "between 0 and 86400 seconds, not 2d"),
    ("max_age: -1\n", "max_age", "invalid interval -1"),
    ("max_age: 1.5m\n", "max_age", "invalid interval '1.5m'"),
    ("max_age: yes\n", "max_age", "invalid interval True"),
    ("categories:\n  a:\n    title: A\n    max_age: 10w\n", "categories.a.max_age",
     "invalid interval '10w'"),
    ("categories:\n  a:\n    title: A\n    sources:\n      - {url: https://u.example/rss, "
     "every: 0s}\n", "categories.a.sources.0.every", "at least 1 second, not 0s"),
])
def test_a_bad_duration_names_its_key(tmp_path: Path, key_text: str, key: str,
                                      words: str) -> None:
    error = refused(tmp_path, DURATION_SITE + key_text)
    assert error.key == key and words in error.reason, error
