"""Helpers shared by the tests: fixture sites on disk and real servers on loopback."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
BASE_CONFIG: dict[str, Any] = {
    "site": {"title": "测试新闻", "url": "https://news.example.com", "timezone": "Asia/Shanghai",
             "language": "zh-CN"},
    "feeds_url": "https://feeds.example.com",
    "posts_dir": "_posts",
    "limit": 20,
    "categories": {
        "kunmingribao": {"title": "昆明日报新闻", "description": "昆明日报最新新闻",
                         "link": "https://news.example.com/category/kunmingribao.html"},
        "caijing": {"title": "财经", "timezone": "Asia/Shanghai"},
        "world": {"title": "World", "timezone": "America/New_York"},
        "empty": {"title": "Nothing yet"},
    },
}


def write_config(root: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    data = {**BASE_CONFIG, **(overrides or {})}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (root / str(data.get("posts_dir", "_posts"))).mkdir(parents=True, exist_ok=True)
    return use_index(path)


def make_site(root: Path, posts: Mapping[str, str] | None = None, *, fixture: str | None = None,
              config: Mapping[str, Any] | None = None) -> Path:
    """A site folder with config.yaml and posts; returns the config path.

    `fixture` copies tests/fixtures/<fixture>/ (its own config.yaml if it has one);
    `posts` maps paths below _posts/ to file text.
    """
    root.mkdir(parents=True, exist_ok=True)
    if fixture:
        shutil.copytree(FIXTURES / fixture, root, dirs_exist_ok=True, symlinks=True)
    cfg = root / "config.yaml"
    if not cfg.exists() or config:
        cfg = write_config(root, config)
    for rel, text in (posts or {}).items():
        target = root / "_posts" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return use_index(cfg)


# -- the index backend the tests run against ------------------------------------------
# tests/conftest.py runs some modules twice: on SQLite (the default) and on
# PostgreSQL (a database of their own per site, on the machine's server).
PG_SERVER = os.environ.get("FEEDSVC_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
# Per test process: a suite that ends drops its own databases, never another run's.
PG_PREFIX = f"feedsvc_index_t{os.getpid()}_"
INDEX_BACKEND = ["sqlite"]


def new_pg_database() -> str:
    """A new, empty database of the tests' own; its URL."""
    import uuid

    import psycopg

    name = f"{PG_PREFIX}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def drop_pg_databases() -> None:
    """Drop the databases the tests made (those named with PG_PREFIX only)."""
    import psycopg

    with psycopg.connect(PG_SERVER + "/postgres", autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [PG_PREFIX + "%"])]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_index(cfg: Path) -> Path:
    """Point a site's config at the backend under test (nothing for SQLite)."""
    if INDEX_BACKEND[0] != "postgres":
        return cfg
    data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
    if "index" not in data:
        data["index"] = {"type": "postgres", "url": new_pg_database()}
        cfg.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                       encoding="utf-8")
    return cfg


def post(title: str, date: str, categories: str = "kunmingribao", body: str = "<p>正文。</p>",
         **extra: str) -> str:
    lines = ["---", f"title: {title}", f"date: {date}", f"categories: {categories}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join([*lines, "---", body, ""])


class FakeClock:
    """The injectable clock (feedsvc/clock.py), the one thing the tests fake:
    it says `now` until a test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`feedsvc serve` as a subprocess on a free loopback port."""

    def __init__(self, config: Path, *, workers: int = 1, threads: int = 4,
                 env: Mapping[str, str] | None = None, ready: bool = True) -> None:
        self.config, self.port = config, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = config.parent / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "feedsvc", "serve", "--config", str(config),
               "--port", str(self.port), "--workers", str(workers), "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=config.parent)
        try:
            # ready=False: a server that is not meant to be ready yet (its index
            # cannot be written), waited for until it answers at all.
            self.wait_ready(path="/readyz" if ready else "/healthz")
        except BaseException:
            self.stop()  # a server that never got ready must not outlive the test
            raise

    def wait_ready(self, timeout: float = 30, path: str = "/readyz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # busy machine: keep waiting
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def worker_pids(self) -> set[int]:
        """The pids of the server's worker processes (the children of its master)."""
        pids: set[int] = set()
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            with open(f"/proc/{self.proc.pid}/task/{task}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
        return pids

    def leads(self) -> bool:
        """Whether this instance is the leader (scans, watches, collects), as /status says."""
        return bool(self.get("/status").json()["worker"]["is_leader"])

    def die(self) -> None:
        """SIGKILL, workers first: no clean-up of any kind, as a machine that dies."""
        for pid in self.worker_pids():
            os.kill(pid, signal.SIGKILL)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Serve = Callable[..., "Server"]   # the conftest `serve` fixture: (config, **Server options)


@contextmanager
def running(config: Path, **kwargs: Any) -> Iterator[Server]:
    server = Server(config, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def statuses(server: Server, times: int = 20) -> list[dict[str, Any]]:
    """/status asked `times` times in a row, and on until every worker has
    answered (new connections: whichever worker accepts first answers)."""
    workers, answers = server.worker_pids(), []
    while len(answers) < times or ({a["worker"]["pid"] for a in answers} < workers
                                   and len(answers) < 400):
        resp = server.get("/status")
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
    return answers


def subscriber_stats(config: Path) -> dict[str, dict[str, str]]:
    """The table `feedsvc stats` prints: feed path → {column: cell}."""
    out = subprocess.run([sys.executable, "-m", "feedsvc", "stats", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    if not lines or "feed" not in lines[0]:
        return {}                       # "no subscriber counts yet"
    head = re.split(r"\s{2,}", lines[0].strip())
    return {cells[0]: dict(zip(head, cells, strict=True))
            for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}


def wait_for(predicate: Any, timeout: float = 10, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy; return its value or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@contextmanager
def machine_redis() -> Iterator[None]:
    """Hold the machine-wide lock on the shared Redis's test databases.

    Several checkouts of feedsvc may run their suites on one machine at once
    (and CI runs where sessions worked); the Redis tests count and delete keys
    in fixed databases, so two runs at once would see each other's keys."""
    with open("/tmp/feedsvc-tests-redis.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
