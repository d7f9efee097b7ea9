"""The one way feedsvc replaces or creates a file: write a hidden temporary file
beside it, then rename (or link) it into place, so a reader — a web server, a
watcher, another worker — sees the old file or the new one, never half of one.
The temporary file is removed whatever happens, so a full disk is not made
fuller by what a failed write left behind."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[tuple[BinaryIO, Path]]:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Hidden (the index and the watcher ignore it) and unique to this writer.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)         # mkstemp's 0600 would hide it from others
            yield fh, tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[BinaryIO]:
    """Write `target` through the yielded file; it replaces the old one only
    when the block ends without an error."""
    with _temporary_beside(target) as (fh, tmp):
        yield fh
        fh.flush()
        os.replace(tmp, target)


def replace_bytes(target: Path, data: bytes) -> None:
    with replacing(target) as fh:
        fh.write(data)


def replace_text(target: Path, text: str) -> None:
    replace_bytes(target, text.encode("utf-8"))


def create_text(target: Path, text: str) -> bool:
    """Create `target` with `text`, never replacing a file that exists (False then)."""
    with _temporary_beside(target) as (fh, tmp):
        fh.write(text.encode("utf-8"))
        fh.flush()
        try:
            os.link(tmp, target)                  # fails if the target exists
        except FileExistsError:
            return False
        except OSError:
            # No hard links on this file system: rename, after checking.
            if target.exists():
                return False
            os.replace(tmp, target)
        return True
