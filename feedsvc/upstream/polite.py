"""Politeness towards upstream hosts when sources are fetched in parallel: at
most `per_host` requests to one host at a time, and at least `delay` seconds
between the starts of two requests to it (feeds and article pages alike)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit


class HostGate:
    def __init__(self, per_host: int = 2, delay: float = 1.0) -> None:
        self.per_host, self.delay = per_host, delay
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next: dict[str, float] = {}

    @contextlib.contextmanager
    def turn(self, url: str) -> Iterator[None]:
        """Wait for this host's turn, then hold one of its slots while the block runs."""
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            slot = self._slots.setdefault(host, threading.Semaphore(self.per_host))
        with slot:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next.get(host, now))
                self._next[host] = start + self.delay
            if start > now:
                time.sleep(start - now)
            yield
