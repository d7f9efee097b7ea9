"""A loopback TCP proxy the tests own, to take a service (Redis, PostgreSQL)
away from a running server and give it back, without touching the service
itself: close() makes it refuse (nothing listens), hang() makes it silent (a
partition, a frozen server: connections are accepted and held, the bytes and
the closes of those open go nowhere, in either direction), forward() ends a hang."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.port = port
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._hanging = threading.Event()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def hang(self) -> None:
        """Stop forwarding, mid-stream: what arrives on an open connection is
        swallowed, a new one is accepted and never answered. Nothing is closed."""
        self._hanging.set()

    def forward(self) -> None:
        """Forward again. The connections held meanwhile are cut, as both ends
        of a partition give theirs up in time; new ones are forwarded."""
        with self._lock:
            conns, self._conns = self._conns, []
            self._hanging.clear()
        self._cut(conns)

    def close(self) -> None:
        """Stop listening and cut every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        self._cut(([listener] if listener else []) + conns)

    @staticmethod
    def _cut(socks: list[socket.socket]) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._hanging.is_set():
                with self._lock:
                    self._conns.append(client)      # held, never answered
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._hanging.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            # A hang passes no close either: the other end learns nothing (its
            # own timeouts must end it), until forward() cuts what is held.
            for sock in (src,) if self._hanging.is_set() else (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
