"""Slow clients for tests and benches: real sockets that send a request's
line and headers a byte at a time (a "slowloris"), and the latency of a
normal request measured next to them.

    with SlowClients(("127.0.0.1", port), "/feeds/x.rss", count=100) as slow:
        ...                     # 100 connections, each one byte further every second
        slow.finish()           # send the rest: each must now get its answer
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any


class SlowClients:
    def __init__(self, address: tuple[str, int], path: str, count: int = 100,
                 interval: float = 1.0) -> None:
        self.address, self.count, self.interval = address, count, interval
        # Long enough that no client gets to the end of its headers while we measure.
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {address[0]}\r\n"
                        f"User-Agent: slow-client\r\nX-Padding: {'p' * 400}\r\n\r\n").encode()
        self.sockets: list[socket.socket] = []
        self.sent = 0            # bytes sent on each socket so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            s = socket.create_connection(self.address, timeout=10)
            self.sockets.append(s)
        self._thread.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | Any) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.sockets:
            s.close()

    def _trickle(self) -> None:
        while not self._stop.is_set() and self.sent < len(self.request) - 4:
            byte = self.request[self.sent:self.sent + 1]
            for s in self.sockets:
                with suppress(OSError):   # a connection the server closed: finish() reports it
                    s.sendall(byte)
            self.sent += 1
            self._stop.wait(self.interval)

    def finish(self, timeout: float = 30) -> list[int]:
        """Stop trickling, send the rest of each request; the status codes answered."""
        self._stop.set()
        self._thread.join(5)
        for s in self.sockets:
            s.sendall(self.request[self.sent:])
        return [_status(s, timeout) for s in self.sockets]


def _status(s: socket.socket, timeout: float) -> int:
    s.settimeout(timeout)
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(64)
        if not chunk:
            return 0
        head += chunk
    return int(head.split(b" ", 2)[1])


def latencies(fetch: Callable[[], object], n: int, pause: float = 0.2) -> list[float]:
    """Seconds taken by n calls of fetch(), one after another."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fetch()
        out.append(time.perf_counter() - t0)
        time.sleep(pause)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1)}
