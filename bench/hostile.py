#!/usr/bin/env python3
"""Figures for docs/SECURITY.md and docs/RELIABILITY.md (issue 15), each next
to its baseline from the same run:

- the fetch deadline against peers that drip a byte every 0.2 s (body,
  headers, TLS handshake) and a name server that never answers, seconds
  until the fetch gives up;
- one entry with 3,000 categories through feedgen, one `category()` call per
  term (what writers.py did) against one call for all (what it does now);
- the per-source state file after six items with 1 MB guids, uncapped
  (what a list capped by count kept) against the byte cap.

    .venv/bin/python bench/hostile.py [--deadline 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from dns_peer import dns_peer, resolver  # noqa: E402
from feedgen.feed import FeedGenerator  # noqa: E402
from slow_peer import self_signed, slow_peer  # noqa: E402

from feedsvc.errors import FetchError  # noqa: E402
from feedsvc.upstream.collector import Item, capped, trim_seen  # noqa: E402
from feedsvc.upstream.fetch import Fetcher, Limits  # noqa: E402


def deadline(seconds: float) -> list[tuple[str, float, str]]:
    import os

    limits = Limits(connect_timeout=5, read_timeout=20, deadline=seconds, retries=2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cert = self_signed(Path(tmp))
        os.environ["REQUESTS_CA_BUNDLE"] = str(cert[0])
        for mode in ("body", "headers", "tls-handshake", "tls-body"):
            with slow_peer(mode, cert=cert if mode == "tls-body" else None,
                           limit=seconds * 4) as peer:
                fetcher, start = Fetcher(limits), time.monotonic()
                try:
                    fetcher.get(peer.url)
                    outcome = "answered"
                except FetchError as e:
                    outcome = str(e)
                rows.append((mode, time.monotonic() - start, outcome))
                fetcher.close()
    with dns_peer(answer=None) as dns:
        rows.append(("silent DNS", *_timed(Fetcher(limits, resolver=resolver(dns.port)),
                                           "http://feeds.hanging-dns.test/rss.xml")))
    return rows


def _timed(fetcher: Fetcher, url: str) -> tuple[float, str]:
    start = time.monotonic()
    try:
        fetcher.get(url)
        outcome = "answered"
    except FetchError as e:
        outcome = str(e)
    fetcher.close()
    return time.monotonic() - start, outcome


def categories(n: int = 3000) -> tuple[float, float]:
    def build(one_call: bool) -> float:
        fg = FeedGenerator()
        fg.id("urn:x")
        fg.title("t")
        fg.link(href="https://x.example/")
        fg.description("d")
        fe = fg.add_entry()
        fe.id("urn:x:1")
        fe.title("e")
        fe.content("c", type="html")
        fe.description("c")
        start = time.perf_counter()
        if one_call:
            fe.category([{"term": f"c{i}"} for i in range(n)])
        else:
            for i in range(n):
                fe.category(term=f"c{i}")
        fg.rss_str()
        fg.atom_str()
        return time.perf_counter() - start

    return min(build(False) for _ in range(3)), min(build(True) for _ in range(3))


def seen_bytes() -> tuple[int, int]:
    guids = [f"{i}" + "g" * 2**20 for i in range(6)]
    kept = [capped(Item(guid=g, link=None, title="", html="", date=None)).guid for g in guids]
    trim_seen(kept)
    return len(json.dumps(guids)), len(json.dumps(kept))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deadline", type=float, default=5.0, help="fetch deadline, seconds")
    args = p.parse_args()
    print(f"fetch deadline {args.deadline:g} s, peers dripping a byte every 0.2 s:")
    for mode, took, outcome in deadline(args.deadline):
        print(f"  {mode:14} gave up after {took:6.2f} s ({took / args.deadline:.2f}× the deadline): "
              f"{outcome}")
    per_term, one = categories()
    print(f"3,000 categories on one entry, RSS + Atom: one call per term {per_term * 1000:.0f} ms, "
          f"one call {one * 1000:.0f} ms ({per_term / one:.1f}× faster)")
    before, after = seen_bytes()
    print(f"seen list after 6 guids of 1 MB: by count only {before / 2**20:.1f} MiB, "
          f"capped in bytes {after} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
