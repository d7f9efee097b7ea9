"""What every measurement needs: corpora, free ports, server processes and
what /proc says about them (CPU time, peak RSS).

Standard library plus requests only, so that the benchmark runs wherever the
tests run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# shared/ sits next to the repository (../shared from the repo root), as the issue says.
MAKE_CORPUS = REPO.parent / "shared" / "bench" / "make_corpus.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def corpus(posts: int, cache: Path) -> Path:
    """config.yaml of a make_corpus.py corpus of `posts` posts, generated once per cache."""
    out = cache / f"corpus-{posts}"
    config = out / "config.yaml"
    if not config.exists():
        if not MAKE_CORPUS.exists():
            raise SystemExit(f"bench: {MAKE_CORPUS} not found (shared/ must sit next to the repo)")
        tmp = cache / f"corpus-{posts}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, str(MAKE_CORPUS), "--posts", str(posts), "--out", str(tmp)],
                       check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return config


def state_dir(config: Path) -> Path:
    """The corpus config sets no state_dir, so feedsvc uses .feedsvc beside it."""
    return config.parent / ".feedsvc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_bin(name: str) -> str:
    """A console script of the interpreter running the benchmark (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


# -- /proc -----------------------------------------------------------------------
def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids += [int(k) for k in fh.read().split()]
    except OSError:
        pass
    return kids


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def status_kb(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- servers -----------------------------------------------------------------------
@dataclass
class Server:
    """A server process (gunicorn master) on a loopback port."""
    proc: subprocess.Popen[bytes]
    url: str
    started: float               # time.perf_counter() just before the process was started
    log: Path

    @classmethod
    def start(cls, cmd: Sequence[str], port: int, log: Path, cwd: Path,
              env: dict[str, str] | None = None) -> Server:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                cwd=cwd, env={**os.environ, **(env or {})},
                                start_new_session=True)
        return cls(proc, f"http://127.0.0.1:{port}", started, log)

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.proc.pid, *children(self.proc.pid)]

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def wait_for(self, path: str, timeout: float = 3600, interval: float = 0.01) -> float:
        """Poll `path` until it answers 200; return seconds since the process started."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                if requests.get(self.url + path, timeout=5).status_code == 200:
                    return time.perf_counter() - self.started
            except requests.RequestException:
                pass
            time.sleep(interval)
        raise RuntimeError(f"{self.url}{path} not served within {timeout}s: {self.output()}")

    def wait_workers(self, count: int, path: str, timeout: float = 3600) -> None:
        """Wait until every worker has loaded the app. feedsvc's /status names the
        worker that answers; a server without it (the baseline) is taken as ready
        after a run of answers on fresh connections."""
        deadline = time.perf_counter() + timeout
        while len(self.workers()) < count and time.perf_counter() < deadline:
            time.sleep(0.05)
        self.wait_for(path, timeout)
        seen: set[int] = set()
        for _ in range(4 * count):
            pid = self._answering_worker()
            if pid is None:
                return  # no /status with worker pids: the answer above will do
            seen.add(pid)
        while not set(self.workers()) <= seen and time.perf_counter() < deadline:
            seen.add(self._answering_worker() or 0)
            time.sleep(0.02)

    def _answering_worker(self) -> int | None:
        try:
            return int(requests.get(self.url + "/status", timeout=30).json()["worker"]["pid"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def feedsvc_server(config: Path, log: Path, workers: int = 2, threads: int = 8) -> Server:
    port = free_port()
    cmd = [venv_bin("feedsvc"), "serve", "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    return Server.start(cmd, port, log, config.parent)


def minimal_server(body_file: Path, headers_file: Path, log: Path, workers: int = 2,
                   threads: int = 8) -> Server:
    """bench/baseline_app.py (the serving yardstick of bench/http_bench.py too)
    under gunicorn with the same worker settings as feedsvc."""
    port = free_port()
    cmd = [venv_bin("gunicorn"), "--chdir", str(BENCH), "-k", "gthread", "-w", str(workers),
           "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--keep-alive", "5",
           "--log-level", "warning", "baseline_app:app"]
    env = {"BASELINE_BODY": str(body_file), "BASELINE_HEADERS": str(headers_file)}
    return Server.start(cmd, port, log, BENCH, env)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its waited-for children) of fn()."""
    r0, p0, c0 = time.perf_counter(), time.process_time(), os.times()
    fn()
    r1, p1, c1 = time.perf_counter(), time.process_time(), os.times()
    children = (c1.children_user + c1.children_system
                - c0.children_user - c0.children_system)
    return r1 - r0, max(0.0, p1 - p0 + children)
