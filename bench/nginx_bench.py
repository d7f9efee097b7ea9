"""feedsvc behind nginx (deploy/nginx/feedsvc.conf), next to nginx serving the
same feed as a static file and to feedsvc alone, measured with wrk in one
run, alternating, for a cached 200 and a 304; and the latency of a normal
request through nginx while 100 slow clients trickle their headers.

    .venv/bin/python bench/nginx_bench.py [--config config.yaml] [--seconds 5] [--runs 3]

bench/run.py includes these figures (`--only nginx`).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml
from harness import feedsvc_server, median
from http_bench import wrk
from measures import Figure, Settings, first_category
from nginx_harness import Nginx, subscriber_log

CASES = {"200": "cached 200", "304": "304"}
SLOW_CLIENTS = 100


def ensure_wrk() -> None:
    """wrk is a Debian package: install it when missing (as root), else say so."""
    if shutil.which("wrk"):
        return
    if shutil.which("apt-get") and _root():
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                       check=True, capture_output=True)
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is needed for the nginx figures (apt-get install wrk)")


def _root() -> bool:
    import os

    return os.geteuid() == 0


def measure(config: Path, logs: Path, s: Settings) -> list[Figure]:
    ensure_wrk()
    feed = f"/feeds/{first_category(config)}.rss"
    with tempfile.TemporaryDirectory(prefix="feedsvc-nginx-bench-") as tmp:
        # As deployed: nginx logs a line per feed request to the file that
        # feedsvc's subscriber_log reads.
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["subscriber_log"] = str(subscriber_log(Path(tmp, "proxy")))
        config = config.with_name("config.nginx-bench.yaml")
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        server = feedsvc_server(config, logs / "nginx-feedsvc.log", s.workers, s.threads)
        try:
            server.wait_workers(s.workers, feed)
            body = requests.get(server.url + feed, headers={"Accept-Encoding": "identity"},
                                timeout=60).content
            static_root = Path(tmp, "static")
            # The exported file is byte-identical to what feedsvc serves (export.py).
            (static_root / feed.lstrip("/")).parent.mkdir(parents=True)
            (static_root / feed.lstrip("/")).write_bytes(body)
            with Nginx(Path(tmp, "proxy"), upstream_port=int(server.url.rsplit(":", 1)[1]),
                       workers=s.workers, access_log=False) as proxy, \
                    Nginx(Path(tmp, "static-nginx"), static_root=static_root,
                          workers=s.workers, access_log=False) as static:
                urls = {"nginx static": static.url, "nginx + feedsvc": proxy.url,
                        "feedsvc alone": server.url}
                for url in urls.values():   # warm: nginx's cache holds the feed
                    requests.get(url + feed, headers={"Accept-Encoding": "identity"}, timeout=60)
                figures = _throughput(urls, feed, s)
                figures.append(_slow_clients(proxy, feed, s))
        finally:
            server.stop()
    return figures


def _throughput(urls: dict[str, str], feed: str, s: Settings) -> list[Figure]:
    plain = {"Accept-Encoding": "identity"}
    etags = {name: requests.get(url + feed, headers=plain, timeout=60).headers["ETag"]
             for name, url in urls.items()}
    runs: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, int] = {}
    order = list(urls)
    for i in range(s.runs):
        for case in CASES:
            # Each round in another order, so that no server always runs first.
            for name in order[i % 3:] + order[:i % 3]:
                headers = dict(plain)
                if case == "304":
                    headers["If-None-Match"] = etags[name]
                r = wrk(urls[name] + feed, duration=max(1, round(s.wrk_seconds)),
                        connections=s.wrk_connections, headers=headers)
                if r["non_2xx_3xx"]:
                    raise RuntimeError(f"{name} {case}: wrong answers: {r}")
                runs.setdefault((case, name), []).append(r["rps"])
                errors[name] = errors.get(name, 0) + int(r["socket_errors"])
    figures = []
    for case, label in CASES.items():
        base = runs[(case, "nginx static")]
        for name, metric in (("nginx + feedsvc", f"through nginx, {label} throughput"),
                             ("feedsvc alone", f"feedsvc alone, {label} throughput")):
            figures.append(Figure(metric, "req/s", runs[(case, name)], "nginx static file", base,
                                  higher_is_better=True,
                                  note=f"wrk; socket errors {errors.get(name, 0)}"))
    return figures


def _slow_clients(proxy: Nginx, feed: str, s: Settings) -> Figure:
    """Worst latency of 20 normal requests through nginx while 100 clients send
    their request head a byte a second; the baseline is the same without them."""
    quiet = _latencies(proxy.url + feed)
    sockets = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(SLOW_CLIENTS)]
    stop = threading.Event()

    def trickle() -> None:
        head = f"GET {feed} HTTP/1.1\r\nHost: x\r\n".encode()
        for i in range(len(head)):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(head[i:i + 1])
            if stop.wait(1.0):
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(1.0)
        slow = _latencies(proxy.url + feed)
    finally:
        stop.set()
        sender.join()
        for sock in sockets:
            sock.close()
    return Figure(f"through nginx, worst of 20 requests beside {SLOW_CLIENTS} slow clients", "ms",
                  [max(slow)], "the same, no slow clients", [max(quiet)],
                  note="headers a byte a second")


def _latencies(url: str) -> list[float]:
    out = []
    for i in range(20):
        t0 = time.perf_counter()
        # Every other one a miss (another ?limit=), so that feedsvc answers too.
        requests.get(url + (f"?limit={1 + i}" if i % 2 else ""), timeout=30).raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config.yaml")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    s = Settings(runs=args.runs, wrk_seconds=args.seconds)
    with tempfile.TemporaryDirectory() as logs:
        for fig in measure(args.config.resolve(), Path(logs), s):
            ratio = f"{fig.ratio:.2f}" if fig.ratio is not None else "–"
            print(f"{fig.metric:<62} {median(fig.runs):>10.1f} {fig.unit:<6} "
                  f"{fig.baseline_name}: {fig.baseline or 0:>10.1f}  ratio {ratio}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
