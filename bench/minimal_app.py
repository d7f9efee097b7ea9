"""The serving baseline: the smallest Flask app that returns the same bytes and
headers as feedsvc for one feed, with the same 304 rule for If-None-Match.

Run by bench/run.py under gunicorn with feedsvc's worker settings; BENCH_BODY
names the file of body bytes, BENCH_HEADERS a JSON object of response headers
(ETag included, quoted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, Response, request

BODY = Path(os.environ["BENCH_BODY"]).read_bytes()
HEADERS: dict[str, str] = json.loads(Path(os.environ["BENCH_HEADERS"]).read_text())
ETAG = HEADERS["ETag"]
NOT_MODIFIED = {k: v for k, v in HEADERS.items() if k in ("ETag", "Cache-Control", "Vary")}

app = Flask(__name__)


@app.get("/<path:anything>")
def feed(anything: str) -> Response:
    if request.headers.get("If-None-Match") == ETAG:
        return Response(status=304, headers=NOT_MODIFIED)
    return Response(BODY, headers=HEADERS)
