"""Real full and read-only file systems for the tests: a small tmpfs of our
own, mounted (we run as root here and in CI) and unmounted in teardown.

Nothing here fakes a full disk: the kernel answers ENOSPC and EROFS. Where
mounting is impossible (no CAP_SYS_ADMIN: an unprivileged container), the
test is skipped and says why — there is no honest stand-in for a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "512k") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = _mount(["-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)])
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root / CAP_SYS_ADMIN): "
                    f"{done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(folder: Path, name: str = ".filler") -> Path:
    """Write into `folder` until its file system is full; return the filler file."""
    filler = folder / name
    block = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        # The last partial page: byte by byte.
        while True:
            try:
                os.write(fd, b"\0")
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


def remount(path: Path, *, read_only: bool) -> None:
    done = _mount(["-o", f"remount,{'ro' if read_only else 'rw'}", str(path)])
    assert done.returncode == 0, done.stderr


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed atomic write would have left behind."""
    return sorted(p.name for p in folder.rglob("*.tmp"))
