"""What `feedsvc serve` hands the server: the Flask app as an ASGI app.

gunicorn's asyncio worker reads each request on its event loop, a byte at a
time if the client sends it so, and calls the app only once the request
line and headers are complete; a slow or idle client holds a socket and a
few kilobytes, never a thread (issue 15, finding 11). The app then runs in a
pool of threads (a2wsgi), as under a threaded server.

A poll answered from the replay cache (replay.py) is sent from the event
loop itself: no thread is woken for it, which is what keeps repeated polls
as cheap as under the threaded server (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Any

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import build_environ
from flask import Flask

from feedsvc.replay import PREFIXES, ReplayCache

Scope = dict[str, Any]
Receive = Any
Send = Any


class Edge:
    def __init__(self, app: Flask, threads: int) -> None:
        self.app = app
        # An answer body is handed to the event loop in one piece and the thread
        # is free at once: a client that reads slowly holds only the loop's buffer.
        self.wsgi = WSGIMiddleware(app, workers=threads)  # type: ignore[arg-type]
        replay = app.wsgi_app
        self.replay = replay if isinstance(replay, ReplayCache) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and self.replay is not None
                and scope["path"].startswith(PREFIXES) and await self._replayed(scope, send)):
            return
        await self.wsgi(scope, receive, send)  # type: ignore[arg-type]

    async def _replayed(self, scope: Scope, send: Send) -> bool:
        assert self.replay is not None
        # The same environ the thread would see, so the same key (a2wsgi builds both).
        hit = self.replay.lookup(build_environ(scope, None))  # type: ignore[arg-type]
        if hit is None:
            return False
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in self.replay.headers(hit)]
        await send({"type": "http.response.start", "status": int(hit.status[:3]),
                    "headers": headers})
        await send({"type": "http.response.body", "body": hit.body})
        return True
