"""What `feedsvc serve` hands the server: the Flask app as an ASGI app.

gunicorn's asyncio worker reads each request on its event loop, a byte at a
time if the client sends it so, and calls the app only once the request
line and headers are complete; a slow or idle client holds a socket and a
few kilobytes, never a thread (issue 15, finding 11). The app then runs in a
pool of threads (a2wsgi), as under a threaded server.

A poll that the replay cache (replay.py) can answer is answered on the event
loop itself: no thread is woken for it, which is what keeps repeated polls
cheap (docs/PERFORMANCE.md "Server"). It still goes through `app.wsgi_app`,
so that the middleware wrapped around the replay cache (request metrics,
subscriber counts) sees every answer; that middleware therefore runs on the
event loop for such answers and must not block (no file or network I/O,
no lock held for long).
"""

from __future__ import annotations

import io
from typing import Any, cast

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import build_environ
from flask import Flask

from feedsvc.replay import FOUND_KEY, PREFIXES, ReplayCache, find_replay, run_to_end

Scope = dict[str, Any]
Receive = Any
Send = Any


class Edge:
    def __init__(self, app: Flask, threads: int) -> None:
        self.app = app
        # An answer's body is handed to the event loop in one piece and the thread
        # is free at once: a client that reads slowly holds only the loop's buffer.
        self.wsgi = WSGIMiddleware(app, workers=threads)  # type: ignore[arg-type]
        self.replay: ReplayCache | None = find_replay(app.wsgi_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and self.replay is not None
                and scope["path"].startswith(PREFIXES) and await self._replayed(scope, send)):
            return
        await self.wsgi(scope, receive, send)  # type: ignore[arg-type]

    async def _replayed(self, scope: Scope, send: Send) -> bool:
        assert self.replay is not None
        # The same environ the thread would see, so the same key (a2wsgi builds both).
        environ = cast(dict[str, Any], build_environ(scope, io.BytesIO()))  # type: ignore[arg-type]
        hit = self.replay.lookup(environ)
        if hit is None:
            return False
        environ[FOUND_KEY] = hit
        (status, headers), body = run_to_end(self.app.wsgi_app, environ)
        await send({"type": "http.response.start", "status": int(status[:3]),
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in headers]})
        await send({"type": "http.response.body", "body": body})
        return True
