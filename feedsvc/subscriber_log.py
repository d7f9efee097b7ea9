"""nginx's lines for subscriber counts: the feed requests nginx answered from
its cache never reach feedsvc, so nginx writes a line for each
(deploy/nginx: `log_format feedsvc_subscribers`), and this reads them into
the same Recorder that feedsvc's own answers go to.

Two ways, chosen by `subscriber_log` in config.yaml:

- **a file** (`/var/log/nginx/feedsvc.subscribers.log`, as deploy/nginx
  ships): nginx buffers the lines (`buffer=64k flush=1s`) and writes them in
  blocks, so a cached answer costs nginx no system call of its own; one
  process per machine (a lock in state_dir) reads what was added every
  second. Where it got to is kept in state_dir, so lines written while
  feedsvc was down are read when it comes back; a rotated file (logrotate's
  rename, or copytruncate) is followed. Measured: the cached 200 through
  nginx at 0.81–0.92 of nginx serving the static file, against 0.45–0.61
  with a datagram per request (docs/PERFORMANCE.md).
- **a UDP address** (`127.0.0.1:5514`, nginx's `access_log syslog:…`): one
  datagram per request, read by every worker (SO_REUSEPORT). Kept for the
  configurations that use it; it halves nginx's speed on a busy feed.

A request counted twice (nginx's line and feedsvc's own view of a request
that reached it, or a line read again after a crash) counts once: readers
are distinct hashes and an aggregator's count is the latest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedsvc import atomic
from feedsvc.leader import Leader
from feedsvc.subscribers import Recorder, is_feed

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
READ_BYTES = 1 << 20             # per read: a poll's memory stays bounded however far behind it is
DRAIN_SECONDS = 10.0             # a rotated file is read this long after the new one appears
LOCK_FILE = "subscriber-log.lock"
POSITION_FILE = "subscriber-log.position.json"
OLDEST = dt.timedelta(hours=24)  # a line read later than this (feedsvc was down) is not counted


@dataclass(frozen=True)
class Line:
    path: str
    user_agent: str
    address: str
    when: dt.datetime | None     # nginx's $msec, when the format has it


def parse_log_line(data: bytes) -> Line | None:
    """A feed answer in one of nginx's lines, or None for anything else
    (another status, a browser's page view, noise). The fields, tab-separated
    and escaped by `escape=json`: `[msec] status uri address user-agent
    sec-fetch-dest`; a syslog datagram has nginx's `<pri>time feedsvc: ` first.
    The form without msec is the one deploy/nginx shipped before."""
    text = data.decode("utf-8", "replace")
    if text.startswith("<"):
        _, sep, text = text.partition("feedsvc: ")
        if not sep:
            return None
    fields = text.rstrip("\r\n").split("\t")
    when = None
    if len(fields) == 6:
        try:
            when = dt.datetime.fromtimestamp(float(fields[0]), dt.UTC)
        except (ValueError, OverflowError, OSError):
            return None
        fields = fields[1:]
    if len(fields) != 5:
        return None
    status, path, addr, ua, dest = (_unescape(f) for f in fields)
    if status not in ("200", "304") or not is_feed(path) or dest.strip().lower() == "document":
        return None
    return Line(path, ua, addr, when)


def _unescape(field: str) -> str:
    """nginx's escape=json: backslash escapes as in a JSON string."""
    if "\\" not in field:
        return field
    try:
        value: Any = json.loads(f'"{field}"')
    except ValueError:
        return field
    return str(value)


def _record(recorder: Recorder, line: Line) -> None:
    if line.when is not None and line.when < recorder.clock() - OLDEST:
        return                           # its day's readers are already counted and their hashes gone
    # nginx's $remote_addr is the reader: nginx is the edge, no header to walk.
    recorder.seen(line.path, line.user_agent, line.address, None, when=line.when)


class LogListener:
    """The UDP form: every worker binds the address with SO_REUSEPORT and the
    kernel shares the datagrams out. Nothing is written to disk but the counts."""

    def __init__(self, recorder: Recorder, address: tuple[str, int]) -> None:
        self.recorder, self.address = recorder, address
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(address)
        self.sock.settimeout(1.0)

    def start(self) -> LogListener:
        threading.Thread(target=self._loop, name="feedsvc-nginx-log", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            line = parse_log_line(data)
            if line is not None:
                _record(self.recorder, line)


class LogTail:
    """The file form: follows the file nginx appends to, from where it got to.

    Whichever worker holds the lock in state_dir reads (the others try again
    every poll, so another takes over when it dies). Lines are handed to the
    recorder, which is flushed before the position is saved: a crash in
    between reads those lines again, which counts nothing twice."""

    def __init__(self, recorder: Recorder, path: Path, state_dir: Path,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.recorder, self.path = recorder, Path(path)
        self.poll_seconds = poll_seconds
        self.turn = Leader(state_dir / LOCK_FILE, role="reader of the subscriber log")
        self.position_file = state_dir / POSITION_FILE
        self._fh: Any = None             # the file being followed (binary, unbuffered reads)
        self._offset = 0                 # bytes of it read (the last line may be partial: _rest)
        self._rest = b""                 # a line nginx has not finished writing yet
        self._old: tuple[Any, float] | None = None   # a rotated file, read until its deadline
        self._problem: str | None = None
        self._stop = threading.Event()

    def start(self) -> LogTail:
        threading.Thread(target=self._loop, name="feedsvc-nginx-log", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            if not self.turn.acquire():
                continue
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - counting must never stop serving
                log.exception("subscriber_log %s: not read", self.path)

    def poll(self) -> int:
        """Read what was added since the last poll; the number of lines read."""
        lines = 0
        if self._old is not None:
            fh, deadline = self._old
            lines += self._drain(fh)
            if time.monotonic() > deadline:
                fh.close()
                self._old = None
        if self._fh is None and not self._open():
            return lines
        lines += self._drain(self._fh)
        if self._rotated():
            lines += self._drain(self._fh)
        # Saved only once they are counted: a restart while the index cannot be
        # written reads them again.
        if lines and self.recorder.flush():
            self._save_position()
        return lines

    def _open(self) -> bool:
        try:
            fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 - held across polls
        except OSError as e:
            self._report(f"cannot read it: {e.strerror or e}")
            return False
        st = os.fstat(fh.fileno())
        saved = self._load_position()
        resume = saved is not None and (saved["dev"], saved["ino"]) == (st.st_dev, st.st_ino) \
            and saved["offset"] <= st.st_size
        self._fh, self._rest = fh, b""
        self._offset = int(saved["offset"]) if resume and saved else 0
        fh.seek(self._offset)
        self._report(None)
        log.info("subscriber_log %s: reading from byte %d", self.path, self._offset)
        return True

    def _drain(self, fh: Any) -> int:
        """Every whole line now in `fh`, in reads of READ_BYTES."""
        current = fh is self._fh
        rest = self._rest if current else b""
        count = 0
        while True:
            chunk = fh.read(READ_BYTES)
            if not chunk:
                break
            data = rest + chunk
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            count += self._hand_over(data[:end])
            if current:
                self._offset += len(chunk)
        if current:
            self._rest = rest
        return count

    def _hand_over(self, block: bytes) -> int:
        """The lines of a block, each distinct request once: a busy feed's lines
        differ only in their time, and the latest is what counts."""
        latest: dict[bytes, bytes] = {}
        lines = block.split(b"\n")
        for raw in lines:
            msec, tab, request = raw.partition(b"\t")
            if tab and msec[:1].isdigit():
                if latest.get(request, b"") < msec:
                    latest[request] = msec
            elif raw:
                latest[raw] = b""
        for request, msec in latest.items():
            line = parse_log_line(msec + b"\t" + request if msec else request)
            if line is not None:
                _record(self.recorder, line)
        return len(lines) - 1

    def _rotated(self) -> bool:
        """After the current file is read to its end: True when there is now
        another to read from its start. A new file at the path (logrotate
        renamed the old one) is followed, the old one kept a while for what
        nginx writes to it before it reopens its logs; a file cut short in
        place (copytruncate) is read again from its start."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False                 # renamed, the new one not made yet: next poll
        mine = os.fstat(self._fh.fileno())
        if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            if self._old is not None:
                self._old[0].close()
            self._old = (self._fh, time.monotonic() + DRAIN_SECONDS)
            self._fh = None
            return self._open()
        if st.st_size < self._offset:
            log.info("subscriber_log %s: cut short in place; reading it from its start", self.path)
            self._fh.seek(0)
            self._offset, self._rest = 0, b""
            return True
        return False

    def _load_position(self) -> dict[str, int] | None:
        try:
            data = json.loads(self.position_file.read_text(encoding="utf-8"))
            if str(data["path"]) != str(self.path):
                return None
            return {k: int(data[k]) for k in ("dev", "ino", "offset")}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_position(self) -> None:
        if self._fh is None:
            return
        st = os.fstat(self._fh.fileno())
        # Where the last whole line ends: a line nginx is still writing is read
        # again whole after a restart, not from its middle.
        data = {"path": str(self.path), "dev": st.st_dev, "ino": st.st_ino,
                "offset": self._offset - len(self._rest)}
        try:
            atomic.replace_text(self.position_file, json.dumps(data) + "\n")
        except OSError as e:
            # Losing it costs only lines read again after a restart.
            log.warning("subscriber_log position not saved in %s: %s", self.position_file,
                        e.strerror or e)

    def _report(self, problem: str | None) -> None:
        if problem != self._problem:
            if problem:
                log.error("subscriber_log %s: %s (trying again every %g s)", self.path, problem,
                          self.poll_seconds)
            elif self._problem:
                log.warning("subscriber_log %s: readable again", self.path)
        self._problem = problem



def follow(recorder: Recorder, where: Path | tuple[str, int],
           state_dir: Path) -> LogTail | LogListener | None:
    """Start reading `subscriber_log` (config.yaml); None, logged, if it cannot be."""
    if isinstance(where, Path):
        return LogTail(recorder, where, state_dir).start()
    try:
        return LogListener(recorder, where).start()
    except OSError as e:
        log.error("subscriber_log %s:%d: cannot listen: %s", *where, e)
        return None
