"""One post file → one Post, with Jekyll's rules (DESIGN.md "Post semantics").

Each case is a file in tests/fixtures/posts/ named after it, copied into a real
site folder and read from disk.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import FIXTURES, make_site

from feedsvc import dates
from feedsvc.config import Config, load_config
from feedsvc.errors import PostError
from feedsvc.posts import Post, read_post

POSTS = FIXTURES / "posts"
SITE = "https://news.example.com"


def site_config(tmp_path: Path, **overrides: Any) -> Config:
    return load_config(make_site(tmp_path / "site", config=overrides or None))


def read(config: Config, case: str, folder: str = "") -> Post:
    """Copy the fixture post `case` into posts_dir/folder and read it."""
    rel = f"{folder}/{case}" if folder else case
    target = config.posts_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(POSTS / case, target)
    return read_post(config.posts_dir, rel, config)


def problem(config: Config, case: str) -> str:
    with pytest.raises(PostError) as info:
        read(config, case)
    assert info.value.path == case
    return info.value.reason


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return site_config(tmp_path)


def rfc3339(value: dt.datetime) -> str:
    return dates.rfc3339(value)


@pytest.mark.parametrize(("case", "categories"), [
    ("2022-03-21-categories-list.md", ("kunmingribao", "world")),
    ("2022-03-21-categories-string.md", ("kunmingribao", "world")),
    ("2022-03-21-category-singular.md", ("kunmingribao",)),
])
def test_categories_list_string_or_singular(config: Config, case: str,
                                            categories: tuple[str, ...]) -> None:
    assert read(config, case).categories == categories


def test_tags_list(config: Config) -> None:
    assert read(config, "2022-03-21-tags-list.md").tags == ("昆明", "经济")


def test_singular_tag_is_one_tag(config: Config) -> None:
    # As real Jekyll reads it: `tag:` is taken as it is, only `tags:` is split.
    assert read(config, "2022-03-21-tag-singular.md").tags == ("昆明 经济",)


def test_folder_category_comes_first(tmp_path: Path) -> None:
    config = site_config(tmp_path, posts_dir="site")
    post = read(config, "2022-03-21-folder-category.md", "kunmingribao/_posts")
    assert post.categories == ("kunmingribao", "world")
    # world is the first category that sets a zone (New York): 10:00 +0800 is the 20th there.
    assert post.url == f"{SITE}/kunmingribao/world/2022/03/20/folder-category.html"


def test_categories_joined_in_permalink(config: Config) -> None:
    post = read(config, "2022-03-21-categories-list.md")
    # world is the first category that sets a zone (New York): 10:00 +0800 is the 20th there.
    assert post.url == f"{SITE}/kunmingribao/world/2022/03/20/categories-list.html"
    assert post.guid == post.url


def test_slug_from_file_name_without_date_prefix(config: Config) -> None:
    post = read(config, "2022-03-21-category-singular.md")
    assert post.slug == "category-singular"


def test_front_matter_slug_wins(config: Config) -> None:
    post = read(config, "2022-03-21-slug-override.md")
    assert post.slug == "custom-slug"
    assert post.url == f"{SITE}/kunmingribao/2022/03/21/custom-slug.html"


def test_permalink_pattern_from_config(tmp_path: Path) -> None:
    config = site_config(tmp_path, permalink="/news/:year/:month/:day/:title/")
    post = read(config, "2022-03-21-slug-override.md")
    assert post.url == f"{SITE}/news/2022/03/21/custom-slug/"


def test_front_matter_permalink_wins(config: Config) -> None:
    assert read(config, "2022-03-21-permalink-override.md").url == f"{SITE}/special/page.html"


def test_dot_segments_are_resolved_out_of_permalinks(config: Config) -> None:
    post = read(config, "2022-03-21-permalink-dot-segments.md")
    # As Jekyll's URL#sanitize_url does: '..' becomes '/', './' goes (real Jekyll
    # writes this post at /news/archive/2022/dots.html).
    assert post.url == f"{SITE}/news/archive/2022/dots.html"


def test_permalink_date_is_local_to_the_post_zone(config: Config) -> None:
    # 2022-03-22 06:00 +0800 is 18:00 on the 21st in New York (category world).
    post = read(config, "2022-03-22-permalink-local-date.md")
    assert post.url == f"{SITE}/world/2022/03/21/permalink-local-date.html"
    assert rfc3339(post.date) == "2022-03-22T06:00:00+08:00"


def test_non_ascii_slug_is_percent_encoded(config: Config) -> None:
    post = read(config, "2022-03-21-昆明新闻.md")
    assert post.slug == "昆明新闻"
    assert post.url == f"{SITE}/kunmingribao/2022/03/21/%E6%98%86%E6%98%8E%E6%96%B0%E9%97%BB.html"


def test_title_from_slug(config: Config) -> None:
    assert read(config, "2022-03-21-title-from-slug.md").title == "Title From Slug"


def test_guid_override(config: Config) -> None:
    post = read(config, "2022-03-21-guid-override.md")
    assert post.guid == "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert post.url == f"{SITE}/kunmingribao/2022/03/21/guid-override.html"


def test_published_false_is_read_but_marked(config: Config) -> None:
    assert read(config, "2022-03-20-unpublished.md").published is False


def test_updated_from_last_modified_at(config: Config) -> None:
    post = read(config, "2022-03-21-updated.md")
    assert rfc3339(post.updated) == "2022-03-25T12:00:00+08:00"
    assert rfc3339(post.date) == "2022-03-21T10:00:00+08:00"


@pytest.mark.parametrize(("case", "date"), [
    ("2022-03-22-naive-date-category-zone.md", "2022-03-22T09:30:00-04:00"),
    ("2022-03-22-naive-date-site-zone.md", "2022-03-22T09:30:00+08:00"),
    ("2022-03-23-date-only.md", "2022-03-23T00:00:00-04:00"),
    ("2022-03-24-filename-only.md", "2022-03-24T00:00:00-04:00"),
])
def test_dates_without_offset_take_the_post_zone(config: Config, case: str, date: str) -> None:
    post = read(config, case)
    assert rfc3339(post.date) == date
    assert post.updated == post.date


@pytest.mark.parametrize(("case", "reason"), [
    ("2022-03-25-bad-date.md", "cannot parse date 'next tuesday-ish'"),
    ("2022-03-25-time-without-date.md", "date '10:30' has no full calendar date"),
    ("2022-03-26-malformed-yaml.md", "invalid YAML"),
    ("2022-03-27-no-front-matter.md", "no front matter"),
    ("2022-03-27-unclosed-front-matter.md", "front matter is not closed"),
    ("2022-03-28-gbk-bytes.md", "not valid UTF-8"),
    ("2022-03-29-alias-bomb.md", "more than 50 aliases"),
    ("2022-03-30-date-out-of-range.md", "out of range"),
    ("2022-03-21-front-matter-a-list.md", "must be a mapping"),
    ("2022-03-21-title-a-mapping.md", "'title': must be text"),
])
def test_unreadable_posts_are_refused_with_a_reason(config: Config, case: str,
                                                    reason: str) -> None:
    assert reason in problem(config, case)


def test_oversized_front_matter_is_refused(config: Config) -> None:
    name = "2022-03-30-oversized-front-matter.md"
    filler = "".join(f"k{i}: {'x' * 60}\n" for i in range(1200))      # ~80 KiB
    (config.posts_dir / name).write_text(f"---\ntitle: big\n{filler}---\nbody\n", encoding="utf-8")
    with pytest.raises(PostError, match="larger than 64 KiB"):
        read_post(config.posts_dir, name, config)


def test_front_matter_lines_may_end_in_blanks_and_crlf(config: Config) -> None:
    post = read(config, "2022-04-02-front-matter-trailing-blanks.md")
    assert post.title == "Opening line with trailing blanks and CRLF"


def test_unconfigured_category_is_read_without_a_problem(config: Config) -> None:
    assert read(config, "2022-03-21-unconfigured-category.md").categories == ("sports",)


@pytest.mark.parametrize(("case", "image"), [
    ("2022-04-03-image-javascript.md", None),
    ("2022-04-03-image-protocol-relative.md", "https://cdn.example.com/a.png"),
    ("2022-04-03-image-path.md", f"{SITE}/images/a%20b.png"),
])
def test_image_is_an_absolute_http_url_or_nothing(config: Config, case: str,
                                                  image: str | None) -> None:
    assert read(config, case).image == image


def test_author_mapping(config: Config) -> None:
    assert read(config, "2022-04-03-author-mapping.md").author == (
        "李明", "li@example.com", "https://li.example.com/")
