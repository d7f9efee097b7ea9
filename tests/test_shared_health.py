"""health.py's shared record of what is failing (issue 12), between real
processes (forked, as gunicorn's workers are) on a folder of the test's own:
an entry is seen by every process, cleared by a success in any of them, and
goes with a process that dies (SIGKILL: no clean-up of its own). Over HTTP
with two workers: test_disk_faults.py and test_index_failures.py."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from disk_support import fill, small_tmpfs

from feedsvc.health import FILE, WriteHealth

FULL = "No space left on device"
CTX = mp.get_context("fork")


def _fails_and_waits(folder: Path, place: str, recorded: Any) -> None:
    record = WriteHealth(folder)
    record.failed(place, FULL)
    record.set_error("index", "database is locked")
    recorded.set()
    time.sleep(60)                        # until killed


@pytest.fixture
def other(tmp_path: Path) -> Iterator[mp.process.BaseProcess]:
    """Another process that failed to write `state.sqlite3` and holds on."""
    recorded = CTX.Event()
    proc = CTX.Process(target=_fails_and_waits,
                       args=(tmp_path, str(tmp_path / "state.sqlite3"), recorded))
    proc.start()
    assert recorded.wait(30)
    yield proc
    proc.kill()
    proc.join()


def test_a_failure_is_seen_by_every_process_with_its_pid(
        tmp_path: Path, other: mp.process.BaseProcess) -> None:
    proc = other
    here = WriteHealth(tmp_path)
    assert here.failures() == {str(tmp_path / "state.sqlite3"): FULL}
    entry = here.failing()[str(tmp_path / "state.sqlite3")]
    assert entry["pid"] == proc.pid and entry["since"] > 0
    assert here.error("index") == "database is locked"


def test_a_success_in_another_process_clears_it(
        tmp_path: Path, other: mp.process.BaseProcess) -> None:
    here = WriteHealth(tmp_path)
    here.ok(tmp_path / "state.sqlite3")
    here.set_error("index", None)
    third = WriteHealth(tmp_path)
    assert third.failures() == {} and third.error("index") is None
    assert here.failures() == {}


def test_a_dead_process_takes_its_entries_with_it(
        tmp_path: Path, other: mp.process.BaseProcess) -> None:
    proc = other
    proc.kill()                           # SIGKILL: it cleans nothing up
    proc.join()
    assert (tmp_path / FILE).read_text()  # its entries are still written …
    here = WriteHealth(tmp_path)
    assert here.failures() == {} and here.error("index") is None   # … and not shown


def test_a_full_shared_folder_leaves_each_process_its_own_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path / "shared", "64k") as folder:
        filler = fill(folder)
        here = WriteHealth(folder)
        here.failed("/srv/state/state.sqlite3", FULL)
        here.failed("/srv/state/leader.lock", FULL)
        # Not shared, still shown by this process; said once in the log.
        assert here.failures() == {"/srv/state/state.sqlite3": FULL,
                                   "/srv/state/leader.lock": FULL}
        assert caplog.text.count("cannot share what is failing") == 1
        assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
        filler.unlink()
        here.ok("/srv/state/leader.lock")
        here.failed("/srv/state/state.sqlite3", FULL)   # retried: now shared
        assert WriteHealth(folder).failures() == {"/srv/state/state.sqlite3": FULL}
        assert here.failures() == {"/srv/state/state.sqlite3": FULL}
        assert os.path.exists(folder / FILE)
