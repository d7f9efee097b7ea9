"""Which files under posts_dir are posts (Jekyll's rule), and their stats,
taken from the directory scan itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from feedsvc import jekyll
from feedsvc.posts import post_kind

Stat = tuple[int, int]   # (mtime_ns, size)


def is_post_path(rel: str, posts_dir: Path,
                 markdown_ext: frozenset[str] = jekyll.MARKDOWN_EXT,
                 skip: frozenset[str] = frozenset(),
                 entry_filter: jekyll.EntryFilter | None = None) -> bool:
    """Jekyll's rule for a relative path: a post file inside a `_posts` folder
    (any file when posts_dir is one), nothing hidden or skipped on the way, and
    for a Jekyll site nothing its `exclude:` leaves out."""
    parts = rel.split("/")
    if any(p.startswith(".") or p in skip for p in parts[:-1]) or parts[-1].startswith(".") \
            or not post_kind(parts[-1], markdown_ext):
        return False
    if entry_filter is not None and entry_filter.rejects(rel):
        return False
    return posts_dir.name == "_posts" or "_posts" in parts[:-1]


def iter_post_files(posts_dir: Path) -> Iterator[str]:
    """Relative paths of the post files, sorted, as Jekyll finds them: files
    inside `_posts` folders at any depth (every file when posts_dir is one),
    hidden files and folders skipped."""
    return iter(sorted(stat_post_files(posts_dir)))


def stat_post_files(posts_dir: Path) -> dict[str, Stat | None]:
    """The post files (see iter_post_files) with their (mtime_ns, size)."""
    return dict(iter_post_stats(posts_dir))


def iter_post_stats(posts_dir: Path, markdown_ext: frozenset[str] = jekyll.MARKDOWN_EXT,
                    skip: frozenset[str] = frozenset(),
                    entry_filter: jekyll.EntryFilter | None = None,
                    ) -> Iterator[tuple[str, Stat | None]]:
    """(rel, (mtime_ns, size)) of every post file, from the directory scan
    itself: a rescan of an unchanged tree costs one stat per file and nothing
    else, and holds no list of the files. A symlink gives None: only resolving
    it says if it counts. Folders named in `skip` (a Jekyll site's _site,
    vendor …) are not entered, nor those a Jekyll site's `exclude:` leaves out
    (`entry_filter`, which drops its excluded files too)."""
    folders = [(str(posts_dir), "", posts_dir.name == "_posts")]
    while folders:
        folder, rel_dir, in_posts = folders.pop()
        try:
            # Iterated, not listed: 100,000 DirEntry objects at once weigh 75 MB.
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or name in skip:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if entry_filter is not None and not in_posts \
                                and entry_filter.rejects_folder(rel_dir + name):
                            continue
                        folders.append((entry.path, rel_dir + name + "/",
                                        in_posts or name == "_posts"))
                    elif in_posts and post_kind(name, markdown_ext):
                        if entry_filter is not None and entry_filter.rejects(rel_dir + name):
                            continue
                        st = None if entry.is_symlink() else entry.stat(follow_symlinks=False)
                        yield rel_dir + name, st and (st.st_mtime_ns, st.st_size)
        except OSError:
            continue  # a folder removed while scanning: its files are gone
