"""Serving speed of `feedsvc serve` next to a minimal Flask app returning the
same bytes with the same headers (bench/baseline_app.py) under gunicorn the
ordinary way (2 gthread workers x 8 threads; feedsvc: 2 asyncio workers, 8
threads each for what is not replayed), measured with wrk on loopback in the
same run, alternating so that both see the same machine load.

    python bench/http_bench.py [--config config.yaml] [--path /feeds/x.rss]
                               [--duration 10] [--connections 32] [--rounds 3]
                               [--slow-clients 100]

Three cases: a cached 200 (no validators, no Accept-Encoding), a 304
(If-None-Match with the current ETag) and a cached 200 with
`Accept-Encoding: gzip` (what most pollers send). Prints requests/s and p99
latency per case and the ratios feedsvc / baseline (the median of the ratios
of runs made back to back). `measure_serving()` returns the same figures as a
dict for bench/run.py.

Then, with `--slow-clients N` (default 100, 0 to skip), the latency of a
normal request (a new connection each time) while N connections send their
headers a byte a second (tests/slow_clients.py), next to the same request
without them, for both servers. A request still unanswered after
SLOW_TIMEOUT seconds counts as that long.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
from slow_clients import SlowClients, latencies, summary  # noqa: E402 - one copy for tests and bench

SLOW_TIMEOUT = 10.0
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WORKERS, THREADS = 2, 8
# The settings feedsvc/server.py gives gunicorn, for the baseline to match.
GUNICORN_FLAGS = [
    "--worker-class", "gthread", "--workers", str(WORKERS), "--threads", str(THREADS),
    "--keep-alive", "5", "--timeout", "60", "--graceful-timeout", "5",
    "--limit-request-line", "8190", "--limit-request-fields", "100",
    "--limit-request-field_size", "8190", "--log-level", "info",
]
# Headers a feed response carries and the baseline repeats (Date and Server
# are the server's own; Content-Length follows from the body).
COPIED = ("Content-Type", "Vary", "Cache-Control", "Access-Control-Allow-Origin", "ETag",
          "Last-Modified")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"no answer from {url}")


@contextmanager
def server(cmd: Sequence[str], url: str, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Iterator[None]:
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    try:
        wait_ready(url, proc)
        # Let both workers finish booting before the clock starts.
        for _ in range(2 * WORKERS):
            requests.get(url, timeout=5)
        time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unreadable latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(url: str, *, duration: int, connections: int, threads: int = 2,
        headers: dict[str, str] | None = None) -> dict[str, float]:
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p99_ms": p99, "non_2xx_3xx": float(bad.group(1)) if bad else 0.0,
            "socket_errors": float(sum(int(x) for x in errors.groups())) if errors else 0.0}


def default_path(config_path: Path) -> str:
    import yaml

    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return f"/feeds/{next(iter(data['categories']))}.rss"


def measure_serving(config_path: str | Path, *, path: str | None = None, duration: int = 10,
                    connections: int = 32, rounds: int = 3, wrk_threads: int = 2,
                    slow_clients: int = 0) -> dict[str, Any]:
    """Requests/s and p99 of `feedsvc serve` and of the baseline app, for a
    cached 200 and a 304, medians over `rounds` alternating runs."""
    config_path = Path(config_path).resolve()
    path = path or default_path(config_path)
    fs_port, base_port = free_port(), free_port()
    fs_url, base_url = f"http://127.0.0.1:{fs_port}", f"http://127.0.0.1:{base_port}"
    feedsvc_cmd = [sys.executable, "-m", "feedsvc", "serve", "--config", str(config_path),
                   "--port", str(fs_port), "--workers", str(WORKERS), "--threads", str(THREADS)]
    with tempfile.TemporaryDirectory() as tmp, \
            server(feedsvc_cmd, fs_url + path, cwd=config_path.parent):
        reply = requests.get(fs_url + path, headers={"Accept-Encoding": "identity"}, timeout=10)
        reply.raise_for_status()
        zipped = requests.get(fs_url + path, headers={"Accept-Encoding": "gzip"}, timeout=10,
                              stream=True)
        body, headers = Path(tmp, "body"), Path(tmp, "headers.json")
        body.write_bytes(reply.content)
        headers.write_text(json.dumps({h: reply.headers[h] for h in COPIED}))
        Path(tmp, "body.gz").write_bytes(zipped.raw.read(decode_content=False))
        Path(tmp, "headers.json.gz").write_text(json.dumps(
            {h: zipped.headers[h] for h in (*COPIED, "Content-Encoding")}))
        etag = reply.headers["ETag"]
        baseline_cmd = [sys.executable, "-m", "gunicorn", *GUNICORN_FLAGS,
                        "--bind", f"127.0.0.1:{base_port}", "baseline_app:app"]
        env = {"BASELINE_BODY": str(body), "BASELINE_HEADERS": str(headers),
               "PYTHONPATH": str(HERE)}
        with server(baseline_cmd, base_url + path, env=env):
            check = requests.get(base_url + path, headers={"Accept-Encoding": "identity"})
            assert check.content == reply.content and check.headers["ETag"] == etag
            cases = {"200": {}, "304": {"If-None-Match": etag},
                     "200-gzip": {"Accept-Encoding": "gzip"}}
            runs: dict[str, dict[str, list[dict[str, float]]]] = {
                case: {"feedsvc": [], "baseline": []} for case in cases}
            servers = [("baseline", base_url), ("feedsvc", fs_url)]
            for i in range(rounds):
                for case, hdrs in cases.items():
                    # Back to back, first one then the other first: the machine's
                    # load drifts, a pair measured together sees the same load.
                    for name, url in (servers if i % 2 == 0 else servers[::-1]):
                        runs[case][name].append(wrk(url + path, duration=duration,
                                                    connections=connections,
                                                    threads=wrk_threads, headers=hdrs))
            slow = {name: slow_client_delay(url, path, slow_clients)
                    for name, url in servers} if slow_clients else None
    result: dict[str, Any] = {"path": path, "body_bytes": len(reply.content),
                              "settings": {"workers": WORKERS, "threads": THREADS,
                                           "connections": connections, "duration_s": duration,
                                           "rounds": rounds}}
    for case, by_name in runs.items():
        med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in by_name.items()}
        pairs = list(zip(by_name["feedsvc"], by_name["baseline"], strict=True))
        # The median of the per-round ratios: robust to load that changes between rounds.
        med["ratio"] = {
            "rps": statistics.median(f["rps"] / b["rps"] for f, b in pairs),
            "p99": statistics.median(f["p99_ms"] / b["p99_ms"] for f, b in pairs),
        }
        result[case] = med
    if slow:
        result["slow_clients"] = {"count": slow_clients, **slow}
    return result


def slow_client_delay(base: str, path: str, count: int, n: int = 8) -> dict[str, Any]:
    """A normal request's latency without and with `count` slow clients."""
    def fetch() -> None:
        # A request that times out counts as the time it took: SLOW_TIMEOUT.
        with suppress(requests.RequestException):
            requests.get(base + path, timeout=SLOW_TIMEOUT)

    host, port = base.removeprefix("http://").split(":")
    alone = latencies(fetch, n)
    with SlowClients((host, int(port)), path, count=count):
        time.sleep(3)  # every slow client has started its headers
        crowded = latencies(fetch, n)
    return {"alone": summary(alone), "with_slow_clients": summary(crowded)}


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['path']} ({result['body_bytes']} bytes), "
             f"{result['settings']['workers']} workers x "
             f"{result['settings']['threads']} threads, wrk -c{result['settings']['connections']}"
             f" -d{result['settings']['duration_s']}s, medians of {result['settings']['rounds']} rounds"
             " (ratio: median of the per-round ratios)",
             f"{'case':<9}{'server':<10}{'req/s':>10}{'p99 ms':>10}"]
    for case in ("200", "304", "200-gzip"):
        for name in ("baseline", "feedsvc"):
            r = result[case][name]
            lines.append(f"{case:<9}{name:<10}{r['rps']:>10.0f}{r['p99_ms']:>10.2f}")
        ratio = result[case]["ratio"]
        lines.append(f"{case:<9}{'ratio':<10}{ratio['rps']:>10.2f}{ratio['p99']:>10.2f}"
                     "   (feedsvc / baseline)")
    slow = result.get("slow_clients")
    if slow:
        lines.append(f"a normal request, alone and next to {slow['count']} clients sending "
                     "headers a byte a second (ms, median / max):")
        for name in ("baseline", "feedsvc"):
            a, w = slow[name]["alone"], slow[name]["with_slow_clients"]
            lines.append(f"  {name:<10}{a['median_ms']:>9.1f} /{a['max_ms']:>8.1f}   →"
                         f"{w['median_ms']:>9.1f} /{w['max_ms']:>8.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "config.yaml"))
    p.add_argument("--path", help="feed to request (default: the first category's RSS)")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--slow-clients", type=int, default=100,
                   help="slow clients next to a normal request (0: skip)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    result = measure_serving(args.config, path=args.path, duration=args.duration,
                             connections=args.connections, rounds=args.rounds,
                             slow_clients=args.slow_clients)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
