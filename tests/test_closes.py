"""closes.py: a file is complete once its writer closed it or renamed it into
place, and only while it stays as it was then; a file still open for writing
is not, however long it has been quiet."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_for

from feedsvc.closes import Closes


def key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Closes, Path]]:
    root = tmp_path / "_posts"
    (root / "deep" / "er").mkdir(parents=True)
    closes = Closes(root)
    # The watches are added by the thread: a first file shows when they are in place.
    wait_for(lambda: _probe(closes, root / "deep" / "er"), timeout=10, interval=0.05)
    try:
        yield closes, root
    finally:
        closes.close()


def test_a_file_still_open_for_writing_is_not_done(watched: tuple[Closes, Path]) -> None:
    closes, root = watched
    path = root / "2022-03-25-halves.md"
    with open(path, "wb") as fh:
        fh.write(b"---\ntitle: first half\n")
        fh.flush()
        time.sleep(0.3)                     # quiet, but not closed
        assert not closes.done(path, key(path))
        fh.write(b"---\nsecond half\n")
    wait_for(lambda: closes.done(path, key(path)), timeout=10, interval=0.01)


def test_a_change_after_the_close_is_not_done_until_closed_again(
        watched: tuple[Closes, Path]) -> None:
    closes, root = watched
    path = root / "deep" / "2022-03-26-edit.md"
    path.write_text("one", encoding="utf-8")
    wait_for(lambda: closes.done(path, key(path)), timeout=10, interval=0.01)
    fh = open(path, "a", encoding="utf-8")   # noqa: SIM115 - held open on purpose
    try:
        fh.write(" two")
        fh.flush()
        assert not closes.done(path, key(path))
    finally:
        fh.close()
    wait_for(lambda: closes.done(path, key(path)), timeout=10, interval=0.01)


def test_renamed_into_place_and_new_folders(watched: tuple[Closes, Path]) -> None:
    closes, root = watched
    tmp = root / ".tmp-atomic"
    tmp.write_text("whole", encoding="utf-8")
    final = root / "2022-03-27-atomic.md"
    os.replace(tmp, final)
    wait_for(lambda: closes.done(final, key(final)), timeout=10, interval=0.01)
    # A folder made after the start is watched too (its first file may be missed:
    # that one waits to settle, as without closes.py).
    folder = root / "keji" / "_posts"
    folder.mkdir(parents=True)
    wait_for(lambda: _probe(closes, folder), timeout=10, interval=0.05)


def _probe(closes: Closes, folder: Path) -> bool:
    path = folder / "probe.md"
    path.write_text(str(time.monotonic()), encoding="utf-8")
    time.sleep(0.02)
    return closes.done(path, key(path))
