"""A private nginx for the tests and the benchmarks: deploy/nginx/feedsvc.conf
as shipped, with only its ports and paths replaced, inside a minimal
nginx.conf of our own, under a prefix in a temporary folder. It never reads
or touches the system's nginx (its config, pid file, logs or cache).

    with Nginx(tmp, upstream_port=8000) as nginx:   # deploy config in front of :8000
        requests.get(nginx.url + "/feeds/x.rss")
    with Nginx(tmp, static_root=out) as nginx:      # a static server of `feedsvc build`'s output

Standard library plus requests only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import requests

REPO = Path(__file__).resolve().parent.parent
SITE_CONF = REPO / "deploy" / "nginx" / "feedsvc.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MIME_TYPES = Path("/etc/nginx/mime.types")

# The only strings of the shipped site configuration that a test may change
# (each with the number of times it is there): where it listens, where
# feedsvc is, where the cache and the logs live.
LISTEN = ("    listen 80;\n    listen [::]:80;\n", "    listen 127.0.0.1:{port};\n", 1)
UPSTREAM = ("server 127.0.0.1:8000;", "server 127.0.0.1:{upstream_port};", 1)
CACHE_PATH = ("/var/cache/nginx/feedsvc", "{prefix}/cache", 1)
ACCESS_LOG = ("/var/log/nginx/feedsvc.access.log", "{prefix}/access.log", 2)   # server, feeds
SUBSCRIBER_LOG = ("access_log /var/log/feedsvc/nginx-subscribers.log",
                  "access_log {prefix}/subscribers.log", 1)

STATIC_SITE = """
server {{
    listen 127.0.0.1:{port};
    root {root};
    etag on;
    gzip off;
    types {{ application/rss+xml rss; application/atom+xml atom; application/feed+json json; }}
    # The access log a production static site keeps, as deploy/nginx keeps it:
    # the yardstick does the same bookkeeping per request as the proxy.
    access_log {prefix}/static.access.log combined buffer=64k flush=5s;
}}
"""

MAIN_CONF = """
{user}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    include {mime_types};
    default_type application/octet-stream;
    access_log {access_log};
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    include {site};
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return Path(NGINX).exists()


def subscriber_log(prefix: Path) -> Path:
    """The file the nginx under `prefix` writes its subscriber lines to: what
    feedsvc's `subscriber_log` names (known before nginx starts)."""
    return Path(prefix).resolve() / "subscribers.log"


def render_site(text: str, *, port: int, upstream_port: int, prefix: Path) -> str:
    """The shipped site config with its ports and paths replaced, and nothing else."""
    for old, new, times in (LISTEN, UPSTREAM, CACHE_PATH, ACCESS_LOG, SUBSCRIBER_LOG):
        if text.count(old) != times:
            raise ValueError(f"{SITE_CONF}: expected {old!r} {times} time(s)")
        text = text.replace(old, new.format(port=port, upstream_port=upstream_port,
                                            prefix=prefix))
    return text


class Nginx:
    def __init__(self, prefix: Path, *, upstream_port: int | None = None,
                 static_root: Path | None = None, workers: int = 1,
                 access_log: bool = True) -> None:
        if (upstream_port is None) == (static_root is None):
            raise ValueError("give upstream_port (the deploy config) or static_root")
        self.prefix = Path(prefix).resolve()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        if upstream_port is not None:
            site = render_site(SITE_CONF.read_text(encoding="utf-8"), port=self.port,
                               upstream_port=upstream_port, prefix=self.prefix)
        else:
            site = STATIC_SITE.format(port=self.port, root=Path(static_root or ".").resolve(),
                                     prefix=self.prefix)
        (self.prefix / "site.conf").write_text(site, encoding="utf-8")
        # As root, nginx's workers would run as nobody, who cannot enter a
        # private temporary folder: keep them as the user running the test.
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(MAIN_CONF.format(
            user=user, workers=workers, prefix=self.prefix, mime_types=MIME_TYPES,
            site=self.prefix / "site.conf",
            access_log=f"{self.prefix}/access.log" if access_log else "off"), encoding="utf-8")
        self.master_pid: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str) -> list[str]:
        # -e: errors before the config is read go here too, not to /var/log/nginx.
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf),
                "-e", str(self.prefix / "error.log"), *extra]

    def test_config(self) -> None:
        proc = subprocess.run(self.command("-t"), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{proc.stderr}")

    def start(self) -> Nginx:
        self.test_config()
        # In the foreground (daemon off) as a child of this process, so that it
        # goes with the process group of whatever started it, even a killed one.
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.master_pid = self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                requests.get(self.url + "/", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start:\n{self.errors()}")

    def errors(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        """Stop the nginx this object started (its own child), nothing else."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)     # nginx's fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = self.master_pid = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
