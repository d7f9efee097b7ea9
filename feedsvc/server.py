"""`feedsvc serve`: the app under gunicorn's asyncio (ASGI) workers.

Each worker reads requests on an event loop and hands a complete request to
the app (edge.py), so slow clients cost sockets, not threads: 100 clients
sending their headers a byte a second leave a normal request's latency
where it was (docs/SECURITY.md S3, tests/test_slow_clients.py). Why this
server and not gthread, uvicorn or waitress: README "Workers" and
docs/PERFORMANCE.md "Server".

A connection must finish its first request's headers within HEADER_TIMEOUT
seconds of opening (`Worker`); gunicorn's own `keepalive` bounds the wait for
every later request's (idle time and headers alike)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi

from feedsvc import health
from feedsvc.config import load_config
from feedsvc.errors import ConfigError

if TYPE_CHECKING:
    from feedsvc.edge import Edge

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds from a connection's opening to the end of its first request's
# headers. gunicorn's asyncio worker has no such deadline: a connection that
# sent nothing stayed open for good (docs/SECURITY.md S3). 20 s as Apache's
# mod_reqtimeout starts with (header=20-40): ample for a request's few hundred
# bytes over any link a feed reader uses; nginx in front has its own (60 s).
HEADER_TIMEOUT = 20.0
SETTINGS: dict[str, Any] = {
    "worker_class": "feedsvc.server.Worker",
    # uvloop and the C request parser (gunicorn-h1c) when installed, as they are
    # with feedsvc; asyncio and gunicorn's Python parser otherwise.
    "asgi_loop": "auto",
    "http_parser": "auto",
    "worker_connections": 1000,
    "timeout": 60,
    "graceful_timeout": 5,
    "keepalive": 5,
    # Bound request lines and headers instead of gunicorn's generous defaults.
    "limit_request_line": 8190,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
}


class HeaderDeadlineProtocol(ASGIProtocol):  # type: ignore[misc]
    """gunicorn's HTTP/1 connection, closed when its first request's headers
    are not complete HEADER_TIMEOUT seconds after it opened."""

    _header_deadline: asyncio.TimerHandle | None = None

    def _start_http1(self, buffered: bytes = b"") -> None:
        # Armed first: the bytes already buffered may complete the headers at once.
        self._header_deadline = self.worker.loop.call_later(HEADER_TIMEOUT, self._headers_late)
        super()._start_http1(buffered)

    def _on_headers_complete(self) -> Any:
        self._cancel_header_deadline()
        return super()._on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_deadline = None
        # As gunicorn ends an idle kept-alive connection: close it, and wake
        # the connection's task so that it sees the close and ends.
        self._keepalive_timeout()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


class Worker(gasgi.ASGIWorker):  # type: ignore[misc]
    """gunicorn's asyncio worker serving connections with HeaderDeadlineProtocol."""

    def init_process(self) -> None:
        # The worker's server factory names the protocol class through its
        # module (gasgi.ASGIProtocol); this is the worker process, after the
        # fork, so the master and other programs keep gunicorn's own.
        gasgi.ASGIProtocol = HeaderDeadlineProtocol
        super().init_process()


class Server(BaseApplication):  # type: ignore[misc]
    """Each worker loads the config and builds its own app (own index, own
    watcher thread).

    A worker that boots while config.yaml holds a bad edit (a late start, a
    restart after a crash) serves the config the master validated at start
    and reports the error, like its siblings do: failing to boot would make
    gunicorn shut the whole server down."""

    def __init__(self, config_path: str, options: dict[str, Any], threads: int) -> None:
        self.config_path, self.options, self.threads = config_path, options, threads
        self.startup_config = load_config(config_path)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Edge:
        # Imported in the worker: importing prometheus_client (through the app) in
        # the master before prepare_metrics_dir() would leave metrics per process.
        from feedsvc.app import create_app, get_service
        from feedsvc.edge import Edge

        try:
            config, error = load_config(self.config_path), None
        except ConfigError as e:
            config, error = self.startup_config, str(e)
        app = create_app(config)
        if error:
            with app.app_context():
                get_service().config_failed(error)
        return Edge(app, self.threads)


def prepare_metrics_dir() -> Path:
    """An empty folder for the workers' metric files (metrics.py), set in the
    environment before any worker forks. systemd's RuntimeDirectory=
    (/run/feedsvc) when there is one, else PROMETHEUS_MULTIPROC_DIR if set,
    else a new temporary folder. Here, not in metrics.py: importing
    prometheus_client decides once whether a process is in multiprocess mode."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        path = Path(runtime.split(":")[0]) / "metrics"
    elif os.environ.get(METRICS_ENV):
        path = Path(os.environ[METRICS_ENV])
    else:
        path = Path(tempfile.mkdtemp(prefix="feedsvc-metrics-"))
    # Files of an earlier run would add their counts to this one's.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[METRICS_ENV] = str(path)
    return path


def _child_exit(server: Any, worker: Any) -> None:
    from feedsvc.metrics import worker_exited

    worker_exited(worker.pid)


def serve(config_path: str, host: str, port: int, workers: int, threads: int,
          access_log: bool) -> None:
    prepare_metrics_dir()
    # What is failing now, one record for all the workers (health.py says why there).
    shared, master = health.prepare_dir(), os.getpid()
    try:
        _run(config_path, host, port, workers, threads, access_log)
    finally:
        # The master's exit only: a worker's SystemExit comes up through here too.
        if os.getpid() == master and not os.environ.get("RUNTIME_DIRECTORY"):
            shutil.rmtree(shared, ignore_errors=True)   # systemd empties its own


def _run(config_path: str, host: str, port: int, workers: int, threads: int,
         access_log: bool) -> None:
    Server(config_path, {
        **SETTINGS,
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "accesslog": "-" if access_log else None,
        "loglevel": "info",
        "proc_name": "feedsvc",
        "control_socket_disable": True,
        "child_exit": _child_exit,
    }, threads).run()
