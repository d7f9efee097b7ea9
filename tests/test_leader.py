"""One leader among processes (feedsvc/leader.py): real processes, a real
lock file; when the leader dies another process takes over."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_for

from feedsvc.leader import Leader

# A worker, as schedule.py uses the lock: every 50 ms it asks for the lead and,
# while it leads, appends its pid to `ticks`.
WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from feedsvc.leader import Leader

    lock, ticks = Path(sys.argv[1]), Path(sys.argv[2])
    leader = Leader(lock)
    for _ in range(1200):
        if leader.acquire():
            with ticks.open("a") as fh:
                fh.write(f"{os.getpid()}\\n")
        time.sleep(0.05)
""")


# Takes the lead, forks a child that lives on, and dies.
LEADER_WITH_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from feedsvc.leader import Leader

    leader = Leader(Path(sys.argv[1]))
    assert leader.acquire()
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    os._exit(0)
""")


def ticking_pids(ticks: Path) -> list[int]:
    return [int(line) for line in ticks.read_text().split()] if ticks.exists() else []


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[list[subprocess.Popen[bytes]], Path]]:
    lock, ticks = tmp_path / "state" / "leader.lock", tmp_path / "ticks"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(lock), str(ticks)])
             for _ in range(2)]
    try:
        yield procs, ticks
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_one_of_two_processes_leads_and_the_other_takes_over(
        workers: tuple[list[subprocess.Popen[bytes]], Path]) -> None:
    procs, ticks = workers
    wait_for(lambda: len(ticking_pids(ticks)) >= 10, timeout=15)
    leaders = set(ticking_pids(ticks))
    assert len(leaders) == 1
    leader = leaders.pop()
    assert leader in {p.pid for p in procs}

    os.kill(leader, signal.SIGKILL)   # no clean-up of any kind: the kernel drops the lock
    (other,) = [p.pid for p in procs if p.pid != leader]
    wait_for(lambda: other in ticking_pids(ticks), timeout=10)
    seen = len(ticking_pids(ticks))
    wait_for(lambda: len(ticking_pids(ticks)) >= seen + 5, timeout=10)
    after = ticking_pids(ticks)[seen:]
    assert set(after) == {other}


def test_acquire_is_exclusive_until_released(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    first, second = Leader(lock), Leader(lock)
    assert first.acquire() and first.is_leader
    assert first.acquire()                  # asking again while leading
    assert not second.acquire() and not second.is_leader
    assert second.describe()["leader_pid"] == os.getpid()
    first.release()
    assert second.acquire()
    assert not first.acquire()
    second.release()


def _child_tries(lock: Path, leader: Leader, out: multiprocessing.SimpleQueue[object]) -> None:
    out.put((leader.is_leader, leader.acquire(), Leader(lock).acquire()))


def test_a_forked_child_does_not_inherit_leadership(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    leader = Leader(lock)
    assert leader.acquire()
    ctx = multiprocessing.get_context("fork")
    out = ctx.SimpleQueue()
    child = ctx.Process(target=_child_tries, args=(lock, leader, out))
    child.start()
    child.join(10)
    assert out.get() == (False, False, False)
    assert leader.is_leader                 # the parent still leads
    leader.release()


def test_a_leaders_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    proc = subprocess.Popen([sys.executable, "-c", LEADER_WITH_CHILD, str(lock)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())     # (the child holds the pipe open: no read to EOF)
    assert proc.wait(30) == 0
    try:
        os.kill(child, 0)                   # the child is still alive...
        # ...and the lock went with its parent (once the child has run its
        # after-fork hook, which a loaded machine may schedule a little late)
        contender = Leader(lock)
        wait_for(contender.acquire, timeout=10)
    finally:
        os.kill(child, signal.SIGKILL)
