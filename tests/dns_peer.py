"""A DNS server of our own on loopback (UDP), and a resolver that asks only it.

The server either answers every A query with one address or, `silent`, reads
queries and never answers: a resolver that hangs, as a broken or hostile
name server makes getaddrinfo(3) hang. The resolver speaks real DNS over a
real socket (RFC 1035, A records only) and waits as long as `wait` for an
answer, far longer than any fetch deadline, so that only the deadline can end
a lookup.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DnsPeer:
    sock: socket.socket
    answer: str | None                 # None: silent
    queries: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                packet, peer = self.sock.recvfrom(512)
            except OSError:
                return                 # closed
            name, question_end = _question(packet)
            self.queries.append(name)
            if self.answer is not None:
                self.sock.sendto(_reply(packet, question_end, self.answer), peer)


@contextlib.contextmanager
def dns_peer(answer: str | None, address: tuple[str, int] = ("127.0.0.1", 0)
             ) -> Iterator[DnsPeer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(address)
    peer = DnsPeer(sock, answer)
    thread = threading.Thread(target=peer.serve, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        sock.close()


@contextlib.contextmanager
def silent_port_53() -> Iterator[DnsPeer]:
    """A silent server on port 53 of a loopback address no other test run uses,
    for a resolv.conf to name (it cannot name a port)."""
    for _ in range(20):
        address = f"127.{random.randrange(1, 255)}.{random.randrange(255)}.{random.randrange(1, 255)}"
        try:
            context = dns_peer(None, (address, 53))
            peer = context.__enter__()
        except OSError:
            continue                   # taken: another address
        try:
            yield peer
        finally:
            context.__exit__(None, None, None)
        return
    raise OSError("no free loopback address for port 53")


def resolver(port: int, wait: float = 60.0) -> Any:
    """A getaddrinfo-shaped resolver (host, port) that asks the server on `port`."""
    def resolve(host: str, tcp_port: int) -> list[tuple[Any, ...]]:
        query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + _name(host) + b"\0\1\0\1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(wait)
            sock.sendto(query, ("127.0.0.1", port))
            reply = sock.recv(512)
        address = socket.inet_ntoa(reply[-4:])
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (address, tcp_port))]
    return resolve


def _name(host: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in host.split(".")) + b"\0"


def _question(packet: bytes) -> tuple[str, int]:
    labels, at = [], 12
    while packet[at]:
        labels.append(packet[at + 1:at + 1 + packet[at]].decode())
        at += 1 + packet[at]
    return ".".join(labels), at + 5           # the zero byte, QTYPE, QCLASS


def _reply(query: bytes, question_end: int, address: str) -> bytes:
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
    return header + query[12:question_end] + record
