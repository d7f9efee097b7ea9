"""The yardstick for bench/http_bench.py: the least a Flask app can do to serve
one feed — fixed bytes and fixed headers read at start, Werkzeug's
make_conditional for 304s — run under the same gunicorn settings as
`feedsvc serve`.

    BASELINE_BODY=feed.xml BASELINE_HEADERS=headers.json gunicorn bench.baseline_app:app
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, Response, request

app = Flask(__name__)
BODY = Path(os.environ["BASELINE_BODY"]).read_bytes()
HEADERS: dict[str, str] = json.loads(Path(os.environ["BASELINE_HEADERS"]).read_text())
# The gzip variant, served when the request mentions gzip at all.
GZ_BODY = Path(os.environ["BASELINE_BODY"] + ".gz").read_bytes()
GZ_HEADERS: dict[str, str] = json.loads(Path(os.environ["BASELINE_HEADERS"] + ".gz").read_text())


@app.get("/<path:_rest>")
def feed(_rest: str) -> Response:
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        resp = Response(GZ_BODY, headers=GZ_HEADERS)
    else:
        resp = Response(BODY, headers=HEADERS)
    resp.make_conditional(request)
    return resp
