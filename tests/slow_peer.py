"""A hostile peer on loopback that holds a connection open by dripping bytes:
its TLS handshake, its response headers or its body, one byte at a time.

Each connection is handled by a thread that stops on its own after `limit`
seconds (or when the client hangs up), so a test whose client does not give
up still ends.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>dripped</title><guid>urn:drip:1</guid></item></channel></rss>")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class SlowPeer:
    """mode: 'body' (headers at once, then the body a byte per `interval`),
    'headers' (the status line and headers a byte per `interval`),
    'tls-handshake' (a TLS record header, then its content a byte per `interval`),
    'tls-body' (a real TLS server whose body drips; needs `cert`)."""

    def __init__(self, mode: str, *, interval: float = 0.2, limit: float = 30.0,
                 cert: tuple[Path, Path] | None = None) -> None:
        self.mode, self.interval, self.limit = mode, interval, limit
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        scheme = "https" if mode.startswith("tls") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/feed.xml"
        self.context: ssl.SSLContext | None = None
        if cert is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*cert)
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> SlowPeer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.limit
        with contextlib.suppress(OSError), conn:
            conn.settimeout(self.limit)
            if self.mode == "tls-handshake":
                conn.recv(4096)                                   # the ClientHello
                # A handshake record of 16 KiB, sent a byte at a time.
                self._drip(conn, b"\x16\x03\x03\x40\x00" + b"\x02" * 0x4000, end)
                return
            if self.mode == "tls-body":
                assert self.context is not None
                conn = self.context.wrap_socket(conn, server_side=True)
            _read_request(conn)
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                    f"Content-Length: {len(FEED)}\r\n\r\n").encode()
            if self.mode == "headers":
                self._drip(conn, head + FEED, end)
            else:
                conn.sendall(head)
                self._drip(conn, FEED, end)

    def _drip(self, conn: socket.socket, data: bytes, end: float) -> None:
        for i in range(len(data)):
            if time.monotonic() > end or self.stopped.is_set():
                return
            conn.sendall(data[i:i + 1])
            time.sleep(self.interval)


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


@contextlib.contextmanager
def slow_peer(mode: str, **kwargs: object) -> Iterator[SlowPeer]:
    peer = SlowPeer(mode, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield peer
    finally:
        peer.stop()
