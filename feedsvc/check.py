"""`feedsvc check`: every problem (a post that is skipped) and every warning (a
post readers will not find where the admin expects it), with true counts.

Problems make the exit code 1; warnings do not change it (DESIGN.md).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.index import Index
from feedsvc.posts import Post


@dataclass(frozen=True)
class Report:
    problems: list[tuple[str, str]]
    warnings: list[tuple[str, str]]
    counts: dict[str, int]


def category_warning(post: Post, config: Config) -> str | None:
    """Why a post is in no category feed, or None when it is in one."""
    if any(c in config.categories for c in post.categories):
        return None
    if not post.categories:
        return "no category: only in the site-wide feed"
    names = ", ".join(f"'{c}'" for c in post.categories)
    hints = [h for c in post.categories
             for h in difflib.get_close_matches(c, list(config.categories), n=1)]
    hint = f" (did you mean '{hints[0]}'?)" if hints else ""
    return (f"category {names} has no feed{hint}: only in the site-wide feed "
            f"(feeds: {', '.join(config.categories) or 'none configured'})")


def url_collisions(posts: list[Post]) -> list[tuple[str, str]]:
    """Posts whose permalink another post (with another id) has: the site has one
    page at that address, so one of the two links leads to the other's page."""
    first: dict[str, Post] = {}
    out = []
    for post in sorted(posts, key=lambda p: p.rel):
        owner = first.setdefault(post.url, post)
        if owner is not post and owner.guid != post.guid:
            out.append((post.rel, f"same URL as {owner.rel} ({post.url}): one page "
                                  "for two posts (their slugs slugify alike)"))
    return out


def check(config: Config, clock: Clock = utcnow) -> Report:
    index = Index(config, clock)
    index.scan()
    now = clock()
    posts = list(index.posts.values())
    problems = sorted([*index.problem_list(), *url_collisions(posts)])
    visible = {p.rel for p in index.views().in_feeds}
    warnings = sorted((p.rel, w) for p in posts
                      if p.rel in visible and (w := category_warning(p, config)))
    counts = {
        "files": len(posts) + len(index.problems),
        "in feeds": len(visible),
        "future": sum(1 for p in posts if p.published and p.date > now),
        "unpublished": sum(1 for p in posts if not p.published),
        "problems": len(problems),
        "warnings": len(warnings),
    }
    return Report(problems, warnings, counts)


def run_check(config: Config) -> int:
    logging.getLogger("feedsvc").setLevel(logging.ERROR)
    report = check(config)
    for rel, reason in report.problems:
        print(f"{config.posts_dir / rel}: {reason}")
    for rel, reason in report.warnings:
        print(f"{config.posts_dir / rel}: warning: {reason}")
    c = report.counts
    verdict = "problems found" if report.problems else "ok"
    print(f"{config.path}: {verdict}; {c['files']} post files, {c['in feeds']} in feeds, "
          f"{c['future']} future, {c['unpublished']} unpublished, "
          f"{c['problems']} problem(s), {c['warnings']} warning(s)")
    return 1 if report.problems else 0
