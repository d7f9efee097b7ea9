"""`feedsvc serve`: the app under gunicorn's asyncio (ASGI) workers.

Each worker reads requests on an event loop and hands a complete request to
the app (edge.py), so slow clients cost sockets, not threads: 100 clients
sending their headers a byte a second leave a normal request's latency
where it was (docs/SECURITY.md S3, tests/test_slow_clients.py). Why this
server and not gthread, uvicorn or waitress: README "Workers" and
docs/PERFORMANCE.md "Server"."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from feedsvc.config import load_config
from feedsvc.errors import ConfigError

if TYPE_CHECKING:
    from feedsvc.edge import Edge

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
SETTINGS: dict[str, Any] = {
    "worker_class": "asgi",
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
