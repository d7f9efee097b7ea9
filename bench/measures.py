"""The measurements of bench/run.py. Each returns Figures: the runs of feedsvc and
of a baseline measured in the same run, so that a ratio survives a noisy machine."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from harness import (
    Server,
    feedsvc_server,
    median,
    minimal_server,
    state_dir,
    status_kb,
    timed,
    venv_bin,
)

# What the baseline server must echo so that it returns the same response.
ECHOED = ("Content-Type", "Content-Encoding", "Vary", "Cache-Control",
          "Access-Control-Allow-Origin", "ETag", "Last-Modified")
# watch.py's settings, for the detection baseline of the change latency.
WATCH_DEBOUNCE_MS, WATCH_STEP_MS = 150, 30


@dataclass
class Figure:
    metric: str
    unit: str
    runs: list[float]
    baseline_name: str | None = None
    baseline_runs: list[float] = field(default_factory=list)
    higher_is_better: bool = False
    note: str = ""

    @property
    def value(self) -> float:
        return median(self.runs)

    @property
    def baseline(self) -> float | None:
        return median(self.baseline_runs) if self.baseline_runs else None

    @property
    def ratio(self) -> float | None:
        """feedsvc / baseline (for throughput: the share of the baseline reached)."""
        b = self.baseline
        return None if not b else self.value / b


@dataclass
class Settings:
    runs: int = 3
    idle_seconds: float = 10.0
    wrk_seconds: float = 5.0
    wrk_connections: int = 16
    workers: int = 2
    threads: int = 8


# -- cold start ---------------------------------------------------------------------
def first_category(config: Path) -> str:
    import yaml

    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    return str(next(iter(data["categories"])))


def cold_start(config: Path, logs: Path, s: Settings,
               fresh_runs: int | None = None) -> list[Figure]:
    """Process start until the first feed is served, with and without a saved index
    (without one, that is the first indexing: feeds answer 503 until it is done),
    next to a minimal Flask app under gunicorn until its first answer.
    fresh_runs=0: only starts with the index already there (it must be)."""
    feed = f"/feeds/{first_category(config)}.rss"
    fresh, saved, base = [], [], []
    fresh_count = s.runs if fresh_runs is None else fresh_runs
    for i in range(max(s.runs, fresh_count)):
        if i < fresh_count:
            shutil.rmtree(state_dir(config), ignore_errors=True)
            fresh.append(_start_once(lambda: feedsvc_server(config, logs / "cold.log",
                                                            s.workers, s.threads),
                                     feed, wait_workers=s.workers))
        if i == 0:
            body, headers = _sample(config, logs, s, feed)
        saved.append(_start_once(lambda: feedsvc_server(config, logs / "cold.log", s.workers,
                                                        s.threads), feed))
        base.append(_start_once(lambda b=body, h=headers: minimal_server(  # type: ignore[misc]
            b, h, logs / "min.log", s.workers, s.threads), feed))
    name = "first indexing from nothing" if fresh_runs else "cold start, no saved index"
    figures = [Figure("cold start, saved index", "s", saved, "minimal Flask app", base)]
    if fresh:
        figures.append(Figure(name, "s", fresh, "minimal Flask app", base))
    return figures


def _start_once(make: Callable[[], Server], feed: str, wait_workers: int = 0) -> float:
    server = make()
    try:
        elapsed = server.wait_for(feed)
        if wait_workers:
            # Let every worker finish (and save the index) before the next start.
            server.wait_workers(wait_workers, feed)
            time.sleep(1.0)
        return elapsed
    finally:
        server.stop()


def _sample(config: Path, logs: Path, s: Settings, feed: str) -> tuple[Path, Path]:
    """Body and headers of one feed, identity and gzip, for the baseline app
    (bench/baseline_app.py reads BODY and BODY.gz, HEADERS and HEADERS.gz)."""
    server = feedsvc_server(config, logs / "sample.log", s.workers, s.threads)
    body_file, headers_file = logs / "body.bin", logs / "headers.json"
    try:
        server.wait_workers(s.workers, feed)
        for coding, suffix in (("identity", ""), ("gzip", ".gz")):
            resp = requests.get(server.url + feed, headers={"Accept-Encoding": coding},
                                stream=True, timeout=30)
            Path(f"{body_file}{suffix}").write_bytes(resp.raw.read(decode_content=False))
            headers = {k: resp.headers[k] for k in ECHOED if k in resp.headers}
            Path(f"{headers_file}{suffix}").write_text(json.dumps(headers), encoding="utf-8")
    finally:
        server.stop()
    return body_file, headers_file


# -- a running server: change latency, idle CPU, serving, memory --------------------------
def running_server(config: Path, logs: Path, s: Settings) -> list[Figure]:
    feed = f"/feeds/{first_category(config)}.rss"
    body, headers = logs / "body.bin", logs / "headers.json"
    if not body.exists():
        _sample(config, logs, s, feed)
    server = feedsvc_server(config, logs / "serve.log", s.workers, s.threads)
    base = minimal_server(body, headers, logs / "min.log", s.workers, s.threads)
    try:
        server.wait_workers(s.workers, feed)
        base.wait_workers(s.workers, feed)
        _touch_every_feed(server, config)
        figures = change_latency(server, config, feed, s)
        figures.append(idle_cpu(server, base, s))
        figures += serving(server, base, feed, config, s)
        figures += memory(server, base)
        return figures
    finally:
        server.stop()
        base.stop()


def _touch_every_feed(server: Server, config: Path) -> None:
    """Serve each category feed in each format once, as a day of polling would."""
    import yaml

    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for slug in [*data["categories"], "all"]:
        for fmt in ("rss", "atom", "json"):
            for _ in range(2):  # reach both workers most of the time
                requests.get(f"{server.url}/feeds/{slug}.{fmt}", timeout=60)


def change_latency(server: Server, config: Path, feed: str, s: Settings) -> list[Figure]:
    """A post written (new, edited, deleted) until every answer carries the change,
    next to how long inotify + the same debounce take to report the write at all."""
    posts = config.parent / "_posts"
    cat = first_category(config)
    path = posts / "2026-01-02-bench-change.md"
    results: dict[str, list[float]] = {"new": [], "edited": [], "deleted": []}
    detect: list[float] = []
    seen: queue.Queue[float] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(posts, seen, stop), daemon=True)
    watcher.start()
    time.sleep(0.5)
    try:
        for i in range(s.runs):
            marker = f"bench-change-{os.getpid()}-{i}"
            steps: list[tuple[str, Callable[[], None], Callable[[bytes], bool]]] = [
                ("new", lambda m=marker: path.write_text(_post(m, cat), encoding="utf-8"),
                 lambda b, m=marker: m.encode() in b),
                ("edited", lambda m=marker: path.write_text(_post(m + "-edited", cat),
                                                            encoding="utf-8"),
                 lambda b, m=marker: (m + "-edited").encode() in b),
                ("deleted", lambda: path.unlink(), lambda b, m=marker: m.encode() not in b),
            ]
            for name, act, done in steps:
                _drain(seen)
                t0 = time.perf_counter()
                act()
                results[name].append(_until(server.url + feed, done, t0))
                with contextlib.suppress(queue.Empty):
                    detect.append(seen.get(timeout=5) - t0)
                time.sleep(1.5)  # let the service settle (index saved) before the next change
    finally:
        stop.set()
        path.unlink(missing_ok=True)
    return [Figure(f"change latency, {name} post", "s", runs,
                   "inotify + debounce only", detect) for name, runs in results.items()]


def _post(title: str, category: str) -> str:
    return (f"---\ntitle: {title}\ndate: 2026-01-02 10:00:00 +0800\ncategories: {category}\n"
            f"---\n<p>{title}: written by bench/run.py.</p>\n")


def _watch(folder: Path, seen: queue.Queue[float], stop: threading.Event) -> None:
    import watchfiles

    for _ in watchfiles.watch(folder, debounce=WATCH_DEBOUNCE_MS, step=WATCH_STEP_MS,
                              stop_event=stop, watch_filter=None, raise_interrupt=False):
        seen.put(time.perf_counter())


def _drain(q: queue.Queue[float]) -> None:
    while not q.empty():
        q.get_nowait()


def _until(url: str, done: Callable[[bytes], bool], t0: float, streak: int = 6,
           timeout: float = 60) -> float:
    """Seconds from t0 until a run of `streak` answers (fresh connections, so that
    they spread over the workers) all show the change."""
    first_ok: float | None = None
    ok = 0
    while time.perf_counter() - t0 < timeout:
        body = requests.get(url, timeout=30).content
        now = time.perf_counter()
        if done(body):
            first_ok = now if ok == 0 else first_ok
            ok += 1
            if ok >= streak:
                assert first_ok is not None
                return first_ok - t0
        else:
            ok = 0
        time.sleep(0.02)
    raise RuntimeError(f"change not served within {timeout}s")


def idle_cpu(server: Server, base: Server, s: Settings) -> Figure:
    """CPU seconds of the master and workers without requests, per 10 s of idling."""
    # The leader's catch-up rescan after the start (25 CPU-s at a million posts)
    # is not idle time, and a starved one can give a quiet second: wait for the
    # line it logs when it is over (watch.py), for up to 10 minutes.
    deadline = time.monotonic() + 600
    while "caught up with posts_dir" not in server.log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the catch-up rescan did not end:\n{server.output()}")
        time.sleep(1.0)
    # A change's aftermath (the index save: seconds at 100,000 posts on a loaded
    # machine) is not idle time either: wait for a quiet second, for up to 60 s.
    for _ in range(60):
        c0 = server.cpu()
        time.sleep(1.0)
        if server.cpu() - c0 < 0.02:
            break
    runs, base_runs = [], []
    for _ in range(max(1, s.runs // 2)):
        c0, b0 = server.cpu(), base.cpu()
        time.sleep(s.idle_seconds)
        scale = 10.0 / s.idle_seconds
        runs.append((server.cpu() - c0) * scale)
        base_runs.append((base.cpu() - b0) * scale)
    return Figure("idle CPU per 10 s", "CPU-s", runs, "minimal Flask app", base_runs,
                  note=f"{s.idle_seconds:g} s window")


# -- serving --------------------------------------------------------------------------------
SERVING_CASES = {"200": "cached 200", "200-gzip": "cached 200 gzip", "304": "304"}


def serving(server: Server, base: Server, feed: str, config: Path, s: Settings) -> list[Figure]:
    """Requests/s and p99 of a cached 200 (identity and gzip) and of a 304, next to
    a minimal Flask app returning the same bytes: bench/http_bench.py with wrk;
    without wrk, a small Python client against the servers already running."""
    if shutil.which("wrk"):
        from http_bench import measure_serving

        result = measure_serving(config, path=feed, duration=max(1, round(s.wrk_seconds)),
                                 connections=s.wrk_connections, rounds=s.runs)
        medians = {case: (result[case]["feedsvc"], result[case]["baseline"])
                   for case in SERVING_CASES}
        return _serving_figures(medians, "wrk, bench/http_bench.py")
    gz = {"Accept-Encoding": "gzip"}
    etag = requests.get(server.url + feed, timeout=30).headers["ETag"]
    cases = {"200": {"Accept-Encoding": "identity"}, "200-gzip": gz,
             "304": {"Accept-Encoding": "identity", "If-None-Match": etag}}
    runs: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    for case, headers in cases.items():
        mine, theirs = [], []
        for _ in range(s.runs):  # alternately, so that both see the same machine
            mine.append(_python_load(server.url + feed, headers, s.wrk_seconds))
            theirs.append(_python_load(base.url + feed, headers, s.wrk_seconds))
        runs[case] = ({"rps": median([r for r, _ in mine]), "p99_ms": median([p for _, p in mine])},
                      {"rps": median([r for r, _ in theirs]),
                       "p99_ms": median([p for _, p in theirs])})
    return _serving_figures(runs, "python load generator (no wrk)")


def _serving_figures(medians: dict[str, tuple[dict[str, float], dict[str, float]]],
                     tool: str) -> list[Figure]:
    figures = []
    for case, label in SERVING_CASES.items():
        mine, theirs = medians[case]
        figures.append(Figure(f"{label} throughput", "req/s", [mine["rps"]],
                              "minimal Flask app", [theirs["rps"]], higher_is_better=True,
                              note=tool))
        figures.append(Figure(f"{label} p99 latency", "ms", [mine["p99_ms"]],
                              "minimal Flask app", [theirs["p99_ms"]], note=tool))
    return figures


def _python_load(url: str, headers: dict[str, str], seconds: float) -> tuple[float, float]:
    """(requests/s, p99 in ms) of four keep-alive clients for `seconds`."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine = []
        while time.perf_counter() < end:
            t = time.perf_counter()
            conn.request("GET", parts.path, headers=headers)
            conn.getresponse().read()
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(4)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p99


# -- memory ---------------------------------------------------------------------------------
def memory(server: Server, base: Server) -> list[Figure]:
    """Peak RSS (VmHWM) of the serving processes after everything above."""
    def mb(pids: list[int]) -> list[float]:
        return [status_kb(p, "VmHWM") / 1024 for p in pids]

    workers, base_workers = mb(server.workers()), mb(base.workers())
    master, base_master = mb([server.proc.pid]), mb([base.proc.pid])
    return [
        Figure("peak RSS, largest worker", "MB", [max(workers)], "minimal Flask app",
               [max(base_workers)]),
        Figure("peak RSS, master + workers", "MB", [sum(master + workers)],
               "minimal Flask app", [sum(base_master + base_workers)]),
    ]


# -- build and change detection without a server --------------------------------------------
def build(config: Path, logs: Path, s: Settings, runs: int) -> list[Figure]:
    """`feedsvc build` of every feed (all pages), from scratch and with the saved
    index, next to a Python process that only reads every post file."""
    fresh, saved, base = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(dir=logs) as out:
            shutil.rmtree(state_dir(config), ignore_errors=True)
            fresh.append(_run([venv_bin("feedsvc"), "build", "--config", str(config),
                               "--out", out], config.parent))
        with tempfile.TemporaryDirectory(dir=logs) as out:
            saved.append(_run([venv_bin("feedsvc"), "build", "--config", str(config),
                               "--out", out], config.parent))
        base.append(_run([sys.executable, "-c", READ_ALL, str(config.parent / "_posts")],
                         config.parent))
    return [
        Figure("build, no saved index", "s", fresh, "python reads every post", base),
        Figure("build, saved index", "s", saved, "python reads every post", base),
    ]


READ_ALL = """
import os, sys
for folder, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        with open(os.path.join(folder, name), "rb") as fh:
            fh.read()
"""


def _run(cmd: list[str], cwd: Path) -> float:
    def go() -> None:
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return timed(go)[0]


def rescan(config: Path, s: Settings) -> Figure:
    """CPU cost of one change-detection pass (Index.scan) when nothing changed,
    next to os.walk + stat of every file: what the watcher does on a folder event."""
    from feedsvc.config import load_config
    from feedsvc.index import Index

    index = Index(load_config(config))
    if not index.load_state():
        index.scan()
    runs, base = [], []
    for _ in range(s.runs):
        runs.append(timed(index.scan)[1])
        base.append(timed(lambda: _stat_all(config.parent / "_posts"))[1])
    return Figure("rescan, nothing changed", "CPU-s", runs, "os.walk + stat", base)


def _stat_all(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            os.stat(os.path.join(folder, name))


# -- incremental export -------------------------------------------------------------------
def incremental_build(config: Path, logs: Path, s: Settings) -> list[Figure]:
    """`feedsvc build` into the folder of a previous build after one new post
    (one category, two tags): seconds and files written, next to the full
    build of the same folder in the same run. Then the post is removed again
    (and the folder brought back) so the corpus stays as generated."""
    category = first_category(config)
    post = config.parent / "_posts" / category / "2099-01-01-bench-incremental.md"
    text = (f"---\ntitle: bench incremental\ndate: 2026-06-01 10:00:00 +0800\n"
            f"categories: {category}\ntags: [bench-one, bench-two]\n---\n<p>one new post.</p>\n")
    full, again, written, files = [], [], [], []
    with tempfile.TemporaryDirectory(dir=logs) as out:
        cmd = [venv_bin("feedsvc"), "build", "--config", str(config), "--out", out]
        full.append(_run(cmd, config.parent))
        for _ in range(s.runs):
            post.parent.mkdir(parents=True, exist_ok=True)
            post.write_text(text, encoding="utf-8")
            try:
                seconds, line = _run_line(cmd, config.parent)
            finally:
                post.unlink(missing_ok=True)
            again.append(seconds)
            counts = _build_counts(line)
            written.append(counts["written"])
            files.append(counts["files"])
            _run(cmd, config.parent)          # back to the corpus as it was
    note = f"of {median(files):.0f} files; current documents and open archives only"
    return [Figure("build after one new post", "s", again, "full build", full),
                Figure("files written after one new post", "files", [float(w) for w in written],
                       "files in the build", [float(f) for f in files], note=note)]


def _run_line(cmd: list[str], cwd: Path) -> tuple[float, str]:
    out: list[str] = []

    def go() -> None:
        out.append(subprocess.run(cmd, cwd=cwd, check=True, capture_output=True,
                                  text=True).stdout)
    seconds = timed(go)[0]
    print(f"bench: {out[0].strip()}", file=sys.stderr, flush=True)
    return seconds, out[0]


def _build_counts(line: str) -> dict[str, int]:
    import re

    m = re.search(r"(\d+) files in .*: (\d+) written, (\d+) unchanged, (\d+) removed", line)
    if not m:
        raise RuntimeError(f"unexpected output of feedsvc build: {line!r}")
    return {"files": int(m.group(1)), "written": int(m.group(2))}
