#!/usr/bin/env python3
"""Soak: `feedsvc serve` (2 workers, Redis cache) polled hard while everything
around it changes, with Redis access cut and restored.

    python bench/soak.py --duration 900 --posts 2000   # the figures in docs/RELIABILITY.md
    python bench/soak.py --duration 25 --json          # the short run tests/test_soak_short.py makes

For `--duration` seconds:
- pollers fetch every feed in every format (category, site-wide, tag; a few with
  query parameters), with If-None-Match / If-Modified-Since from their last
  answer, gzip or not;
- a writer adds, edits and deletes posts (plain non-atomic writes, as editors
  do), edits config.yaml (valid edits, and invalid ones that are put right
  a little later);
- a TCP proxy owned by this script sits between the service and Redis
  (127.0.0.1:6379, DB 7) and is cut and restored: the machine's Redis is never
  touched.

It reports requests, 5xx, connection errors, bodies that do not match their
ETag, posts written but never served, versions of a post that stood for
several seconds but were never served, p50/p99 latency and the service's
memory (RSS of master + workers) at start and end, every 30 s, and its growth
over the last 5 minutes (the last third of a run shorter than 15 minutes).
Exit status 1 when any of the must-be-zero counts is not zero, or when a run
of 15 minutes or more grew by more than 5 % over its last 5 minutes (issue 15).
`--posts N` adds N older posts that nobody edits (a site of some size:
documents of 50 entries, views over N posts). Loopback only; bounded in time
and in requests (--max-requests).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tcp_proxy import TcpProxy  # noqa: E402 - one proxy for the tests and the soak

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = 7            # --redis-db: the tests' short soak uses 7
MEMORY_WINDOW = 300.0   # seconds at the end of a run over which RSS may grow by at most
MEMORY_GROWTH_MAX = 5.0  # percent (when the run is at least 3 windows long)
CATEGORIES = ["kunming", "caijing", "keji"]
TAGS = ["昆明", "soak"]
TOKEN = re.compile(rb"SOAK-(\d+)-v(\d+)")
SEEN_WINDOW = 5.0       # a version current this long must have been served
MAX_LIVE_POSTS = 45     # the writer deletes the oldest beyond this (all fit on page 1)


# -- a TCP proxy we own, between the service and Redis ------------------------

class Proxy(TcpProxy):
    """The tests' proxy on a fixed port: cut() drops every connection and
    refuses new ones until restore()."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target, _free_port())
        self.cuts = 0

    def restore(self) -> None:
        self.start()

    def cut(self) -> None:
        self.cuts += 1
        self.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the site and the writer --------------------------------------------------

def base_config(proxy_port: int, extra: bool, description: str) -> dict[str, Any]:
    cats: dict[str, Any] = {c: {"title": f"Soak {c}", "description": description} for c in CATEGORIES}
    cats["keji"]["timezone"] = "America/New_York"
    if extra:
        cats["extra"] = {"title": "Comes and goes"}
    return {
        "site": {"title": "Soak 测试", "url": "https://soak.example.com", "timezone": "Asia/Shanghai",
                 "language": "zh-CN"},
        "feeds_url": "https://feeds.soak.example.com",
        "posts_dir": "_posts",
        "limit": 50,
        "max_limit": 100,
        "max_age": 60,
        "categories": cats,
        "cache": {"type": "redis", "url": f"redis://127.0.0.1:{proxy_port}/{REDIS_DB}"},
    }


@dataclass
class Version:
    n: int
    v: int
    since: float
    until: float | None = None


@dataclass
class Ledger:
    """What the writer wrote and what the pollers saw, by post number and version."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: dict[tuple[int, int], Version] = field(default_factory=dict)
    live: dict[int, tuple[str, int]] = field(default_factory=dict)     # n → (category, version)
    seen: set[tuple[int, int]] = field(default_factory=set)
    actions: dict[str, int] = field(default_factory=dict)

    def count(self, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1


class Writer:
    def __init__(self, root: Path, proxy_port: int, ledger: Ledger, rng: random.Random) -> None:
        self.root, self.proxy_port, self.ledger, self.rng = root, proxy_port, ledger, rng
        self.posts = root / "_posts"
        self.next_n = 0
        self.extra = False

    def post_path(self, n: int) -> Path:
        return self.posts / f"2022-01-01-soak-{n}.md"

    def write_post(self, n: int, v: int, category: str) -> None:
        when = time.gmtime(time.time() - 2)
        date = time.strftime("%Y-%m-%d %H:%M:%S +0000", when)
        tags = json.dumps(self.rng.sample(TAGS, self.rng.randint(0, len(TAGS))), ensure_ascii=False)
        filler = "<p>填充内容。</p>\n" * self.rng.randint(0, 30)
        text = (f"---\ntitle: 第{n}条 SOAK-{n}-v{v}\ndate: {date}\ncategories: {category}\n"
                f"tags: {tags}\n---\n<p>正文 {n} 第{v}版。</p>\n{filler}")
        self.post_path(n).write_text(text, encoding="utf-8")     # not atomic, on purpose

    def add(self) -> None:
        n, category = self.next_n, self.rng.choice(CATEGORIES)
        self.next_n += 1
        with self.ledger.lock:
            self.ledger.versions[(n, 0)] = Version(n, 0, time.monotonic())
            self.ledger.live[n] = (category, 0)
        self.write_post(n, 0, category)
        self.ledger.count("add")

    def edit(self) -> None:
        with self.ledger.lock:
            if not self.ledger.live:
                return
            n = self.rng.choice(list(self.ledger.live))
            category, v = self.ledger.live[n]
            now = time.monotonic()
            self.ledger.versions[(n, v)].until = now
            self.ledger.versions[(n, v + 1)] = Version(n, v + 1, now)
            self.ledger.live[n] = (category, v + 1)
        self.write_post(n, v + 1, category)
        self.ledger.count("edit")

    def delete(self, n: int | None = None) -> None:
        with self.ledger.lock:
            if not self.ledger.live:
                return
            n = min(self.ledger.live) if n is None else n
            _, v = self.ledger.live.pop(n)
            self.ledger.versions[(n, v)].until = time.monotonic()
        self.post_path(n).unlink()
        self.ledger.count("delete")

    def config(self, valid: bool) -> None:
        path = self.root / "config.yaml"
        if valid:
            self.extra = not self.extra
            data = base_config(self.proxy_port, self.extra, f"描述 {self.rng.randint(0, 10**6)}")
            path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
            self.ledger.count("config_valid")
        else:
            good = path.read_text(encoding="utf-8")
            bad = self.rng.choice([good.replace("categories:", "categories: [", 1),
                                   good.replace("limit: 50", "limit: 2022-02-30"),
                                   good + "\nunknown_key: 1\n", ""])
            path.write_text(bad, encoding="utf-8")
            self.ledger.count("config_invalid")
            time.sleep(1.5)
            path.write_text(good, encoding="utf-8")

    def background(self, count: int) -> None:
        """Older posts nobody edits, in every category, some with tags."""
        for i in range(count):
            category, tags = CATEGORIES[i % len(CATEGORIES)], TAGS[: i % 3]
            day = f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}"
            filler = "<p>背景内容。</p>\n" * (i % 20)
            (self.posts / f"{day}-background-{i}.md").write_text(
                f"---\ntitle: 背景 {i}\ndate: {day} {i % 24:02d}:00:00 +0800\n"
                f"categories: {category}\ntags: {json.dumps(tags, ensure_ascii=False)}\n---\n"
                f"<p>背景 {i}。</p>\n{filler}", encoding="utf-8")

    def step(self) -> None:
        r = self.rng.random()
        if r < 0.55 or not self.ledger.live:
            self.add()
        elif r < 0.9:
            self.edit()
        else:
            self.delete(self.rng.choice(list(self.ledger.live)))
        while len(self.ledger.live) > MAX_LIVE_POSTS:
            self.delete()


# -- pollers ------------------------------------------------------------------

@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    status: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0
    etag_mismatches: int = 0
    unexpected_404: int = 0
    latencies: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, text: str) -> None:
        # When, too: a 5xx at the start (readiness) and one under chaos have other causes.
        if len(self.examples) < 10:
            self.examples.append(f"t+{time.monotonic() - self.started:.1f}s {text}")


def body_etag(body: bytes) -> str:
    # As feedsvc.service.render_document: sha256 of the identity body, 40 hex digits.
    return hashlib.sha256(body).hexdigest()[:40]


def feed_urls() -> list[str]:
    names = [f"/feeds/{c}" for c in [*CATEGORIES, "all", "extra"]]
    names += [f"/tags/{quote(t)}" for t in TAGS]
    urls = [f"{n}.{fmt}" for n in names for fmt in ("rss", "atom", "json")]
    return urls + ["/feeds/kunming.json?limit=5", "/feeds/all.atom?filter=soak&utm_source=x",
                   "/feeds/caijing.rss?opencc=s2t"]


def poller(base: str, stats: Stats, ledger: Ledger, stop: threading.Event, rng: random.Random,
           max_requests: int) -> None:
    session = requests.Session()
    held: dict[tuple[str, bool], tuple[str, str | None]] = {}
    urls = feed_urls()
    while not stop.is_set():
        url = rng.choice(urls)
        gz = rng.random() < 0.5
        headers = {"Accept-Encoding": "gzip" if gz else "identity"}
        if (url, gz) in held and rng.random() < 0.9:
            etag, modified = held[(url, gz)]
            if rng.random() < 0.8:
                headers["If-None-Match"] = etag
            elif modified:
                headers["If-Modified-Since"] = modified
        t0 = time.perf_counter()
        try:
            resp = session.get(base + url, headers=headers, timeout=10, stream=True)
            raw = resp.raw.read(decode_content=False)
            resp.close()
        except requests.RequestException as e:
            with stats.lock:
                stats.requests += 1
                stats.connection_errors += 1
                stats.note(f"{url}: {type(e).__name__}")
            time.sleep(0.05)
            continue
        elapsed = time.perf_counter() - t0
        check(url, gz, resp, raw, stats, ledger, held)
        with stats.lock:
            stats.requests += 1
            stats.latencies.append(elapsed)
            stats.status[resp.status_code] = stats.status.get(resp.status_code, 0) + 1
            if stats.requests >= max_requests:
                stop.set()
        time.sleep(rng.uniform(0, 0.02))


def check(url: str, gz: bool, resp: requests.Response, raw: bytes, stats: Stats, ledger: Ledger,
          held: dict[tuple[str, bool], tuple[str, str | None]]) -> None:
    code = resp.status_code
    if code >= 500:
        with stats.lock:
            stats.note(f"{url}: {code} {raw[:200]!r}")
    if code == 404 and "/extra." not in url:
        with stats.lock:
            stats.unexpected_404 += 1
            stats.note(f"{url}: 404 {raw[:200]!r}")
    if code != 200:
        return
    etag = (resp.headers.get("ETag") or "").strip('"')
    body = gzip.decompress(raw) if resp.headers.get("Content-Encoding") == "gzip" else raw
    if etag.removesuffix("-gzip") != body_etag(body):
        with stats.lock:
            stats.etag_mismatches += 1
            stats.note(f"{url}: ETag {etag} for a body hashing to {body_etag(body)}")
    held[(url, gz)] = (resp.headers.get("ETag", ""), resp.headers.get("Last-Modified"))
    found = {(int(n), int(v)) for n, v in TOKEN.findall(body)}
    with ledger.lock:
        ledger.seen |= found


# -- the service --------------------------------------------------------------

def rss_kib(pid: int) -> int:
    """RSS of a process and its children, KiB (from /proc; Linux only)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


@contextmanager
def serving(config: Path, workers: int, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    cmd = [sys.executable, "-m", "feedsvc", "serve", "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=config.parent,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # /readyz, not /healthz: until the first indexing is done feeds answer 503
        # "being indexed" by design (issue 12), and the soak is about the service
        # once it serves, so those are not counted against it.
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"feedsvc serve exited {proc.returncode}:\n{log.read_text()}")
            with suppress(requests.RequestException):
                if requests.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("feedsvc serve was not ready within 180 s")
            time.sleep(0.2)
        yield proc, base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_documents(clear: bool = False) -> int:
    """Our keys in DB 7 (never FLUSHDB: only what feedsvc wrote)."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    keys = list(client.scan_iter("feedsvc:*", count=500))
    if clear and keys:
        client.delete(*keys)
    return len(keys)


# -- the run ------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="feedsvc-soak-"))
    proxy = Proxy((REDIS_HOST, REDIS_PORT))
    proxy.restore()
    redis_documents(clear=True)
    ledger, stats = Ledger(), Stats()
    writer = Writer(root, proxy.port, ledger, rng)
    writer.posts.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(base_config(proxy.port, False, "描述"),
                                                     allow_unicode=True), encoding="utf-8")
    writer.background(args.posts)
    for _ in range(20):
        writer.add()
    stop = threading.Event()
    try:
        with serving(root / "config.yaml", args.workers, root / "server.log") as (proc, base):
            time.sleep(1)
            mem_start = rss_kib(proc.pid)
            threads = [threading.Thread(target=poller, args=(base, stats, ledger, stop,
                                                             random.Random(rng.random()), args.max_requests))
                       for _ in range(args.pollers)]
            threads.append(threading.Thread(target=chaos, args=(writer, proxy, stop, rng, args)))
            timeline: list[tuple[int, int]] = []
            threads.append(threading.Thread(target=sample_memory, args=(proc.pid, stop, timeline)))
            started = stats.started = time.monotonic()
            for t in threads:
                t.start()
            stop.wait(args.duration)
            stop.set()
            for t in threads:
                t.join(30)
            elapsed = time.monotonic() - started
            final_missing = settle(base, ledger, args.settle)
            mem_end = rss_kib(proc.pid)
            server_log = (root / "server.log").read_text(errors="replace")
            stored, stored_bytes = redis_documents(), redis_bytes()
            redis_documents(clear=True)   # a shared Redis: leave none of ours behind
    finally:
        proxy.cut()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result = report(stats, ledger, elapsed, mem_start, mem_end, final_missing, proxy.cuts, args,
                    server_log)
    result["redis_documents_at_end"] = stored
    result["redis_mib_at_end"] = round(stored_bytes / 2**20, 1)
    result["rss_mib_every_30s"] = timeline
    result["rss_growth_last_window"] = memory_growth(timeline, elapsed)
    result["server_tracebacks"] = result["server_log"]["tracebacks"]
    return result


def chaos(writer: Writer, proxy: Proxy, stop: threading.Event, rng: random.Random,
          args: argparse.Namespace) -> None:
    """The writer's steps, config edits and Redis cuts, on one clock."""
    next_config = time.monotonic() + args.config_every
    next_cut = time.monotonic() + args.cut_every
    restore_at: float | None = None
    valid = True
    while not stop.wait(rng.uniform(0.5, 1.5) / args.write_rate):
        now = time.monotonic()
        writer.step()
        if now >= next_config:
            writer.config(valid)
            valid, next_config = not valid, time.monotonic() + args.config_every
        if restore_at is None and now >= next_cut:
            proxy.cut()
            restore_at = now + rng.uniform(1.5, 4.0)
        elif restore_at is not None and now >= restore_at:
            proxy.restore()
            restore_at, next_cut = None, now + args.cut_every
    if restore_at is not None:
        proxy.restore()


def sample_memory(pid: int, stop: threading.Event, timeline: list[tuple[int, int]]) -> None:
    """RSS (MiB) every 30 s, to tell a plateau from a leak."""
    started = time.monotonic()
    while not stop.wait(30):
        timeline.append((round(time.monotonic() - started), rss_kib(pid) // 1024))


def memory_growth(timeline: list[tuple[int, int]], elapsed: float) -> dict[str, Any]:
    """RSS growth over the last MEMORY_WINDOW seconds (the last third of a shorter
    run), from the 30 s samples: a plateau is ~0 %, a leak keeps growing."""
    window = min(MEMORY_WINDOW, elapsed / 3)
    if len(timeline) < 2:
        return {"window_s": round(window), "percent": None, "checked": False}
    end_t, end_rss = timeline[-1]
    start_t, start_rss = min(timeline, key=lambda s: abs(s[0] - (end_t - window)))
    percent = round(100.0 * (end_rss - start_rss) / start_rss, 1) if start_rss else None
    return {"window_s": end_t - start_t, "from_mib": start_rss, "to_mib": end_rss,
            "percent": percent, "checked": elapsed >= 3 * MEMORY_WINDOW}


def redis_bytes() -> int:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    return sum(client.memory_usage(k) or 0 for k in client.scan_iter("feedsvc:*", count=500))


def settle(base: str, ledger: Ledger, timeout: float) -> list[tuple[int, int]]:
    """After the writer stops: the final version of every live post must be served."""
    deadline = time.monotonic() + timeout
    while True:
        with ledger.lock:
            want = {(n, v) for n, (_, v) in ledger.live.items()}
        found: set[tuple[int, int]] = set()
        for c in CATEGORIES:
            with suppress(requests.RequestException):
                body = requests.get(f"{base}/feeds/{c}.json", timeout=10).content
                found |= {(int(n), int(v)) for n, v in TOKEN.findall(body)}
        with ledger.lock:
            ledger.seen |= found
        missing = sorted(want - found)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def report(stats: Stats, ledger: Ledger, elapsed: float, mem_start: int, mem_end: int,
           final_missing: list[tuple[int, int]], cuts: int, args: argparse.Namespace,
           server_log: str) -> dict[str, Any]:
    written = {n for (n, _v) in ledger.versions}
    seen_posts = {n for (n, _v) in ledger.seen}
    stood = [k for k, ver in ledger.versions.items()
             if ((ver.until or time.monotonic()) - ver.since) >= SEEN_WINDOW]
    fivexx = sum(c for s, c in stats.status.items() if s >= 500)
    return {
        "duration_s": round(elapsed, 1),
        "pollers": args.pollers,
        "workers": args.workers,
        "requests": stats.requests,
        "requests_per_s": round(stats.requests / elapsed, 1) if elapsed else 0,
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "5xx": fivexx,
        "connection_errors": stats.connection_errors,
        "etag_mismatches": stats.etag_mismatches,
        "unexpected_404": stats.unexpected_404,
        "posts_written": len(written),
        "posts_never_served": len(written - seen_posts),
        "versions_written": len(ledger.versions),
        "versions_standing_5s_never_served": len(set(stood) - ledger.seen),
        "final_versions_not_served": len(final_missing),
        "writer": dict(ledger.actions),
        "redis_cuts": cuts,
        "latency_ms": {"p50": round(_percentile(stats.latencies, 0.5) * 1000, 1),
                       "p99": round(_percentile(stats.latencies, 0.99) * 1000, 1),
                       "max": round(max(stats.latencies, default=0) * 1000, 1)},
        "rss_kib": {"start": mem_start, "end": mem_end},
        "server_log": {"redis_unavailable": server_log.count("unavailable"),
                       "redis_back": server_log.count("is back"),
                       "config_rejected": server_log.count("config not reloaded"),
                       "config_reloaded": server_log.count("config reloaded"),
                       "tracebacks": server_log.count("Traceback")},
        "examples": stats.examples,
    }


MUST_BE_ZERO = ("5xx", "connection_errors", "etag_mismatches", "unexpected_404",
                "posts_never_served", "versions_standing_5s_never_served", "final_versions_not_served",
                "server_tracebacks")


def main(argv: list[str] | None = None) -> int:
    global REDIS_DB
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=240, help="seconds of load (default 240)")
    p.add_argument("--pollers", type=int, default=6, help="concurrent polling clients")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--write-rate", type=float, default=2.0, help="writer steps per second")
    p.add_argument("--config-every", type=float, default=10.0, help="seconds between config edits")
    p.add_argument("--cut-every", type=float, default=12.0, help="seconds between Redis cuts")
    p.add_argument("--settle", type=float, default=20.0, help="seconds allowed to catch up at the end")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="stop after this many")
    p.add_argument("--posts", type=int, default=0, help="older posts nobody edits (default 0)")
    p.add_argument("--redis-db", type=int, default=7, help="Redis database (default 7)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the temporary site and server log")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = p.parse_args(argv)
    REDIS_DB = args.redis_db
    result = run(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            print(f"{key:>36}: {value}")
    bad = {k: result[k] for k in MUST_BE_ZERO if result[k]}
    growth = result["rss_growth_last_window"]
    print(f"RSS growth over the last {growth['window_s']} s: {growth['percent']} %"
          + (f" (at most {MEMORY_GROWTH_MAX:g} %)" if growth["checked"] else " (not checked: short run)"),
          file=sys.stderr)
    if growth["checked"] and (growth["percent"] is None or growth["percent"] > MEMORY_GROWTH_MAX):
        bad["rss_growth_last_window"] = growth
    if bad:
        print(f"FAILED: {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
