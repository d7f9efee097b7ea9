"""The serving baseline: the smallest Flask app that returns the same bytes and
headers as feedsvc for one feed, with the same 304 rule for If-None-Match.

Run by bench/run.py under gunicorn with feedsvc's worker settings, for the cold
start baseline and for serving when wrk is missing (with wrk, bench/http_bench.py
and its baseline_app.py measure serving). BENCH_BODY names the file of identity
body bytes (BENCH_BODY.gz: gzip), BENCH_HEADERS a JSON object of response
headers (ETag included, quoted; BENCH_HEADERS.gz for gzip).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, Response, request

BODY = Path(os.environ["BENCH_BODY"]).read_bytes()
HEADERS: dict[str, str] = json.loads(Path(os.environ["BENCH_HEADERS"]).read_text())
GZ_BODY = Path(os.environ["BENCH_BODY"] + ".gz").read_bytes()
GZ_HEADERS: dict[str, str] = json.loads(Path(os.environ["BENCH_HEADERS"] + ".gz").read_text())

app = Flask(__name__)


@app.get("/<path:anything>")
def feed(anything: str) -> Response:
    gz = "gzip" in request.headers.get("Accept-Encoding", "")
    body, headers = (GZ_BODY, GZ_HEADERS) if gz else (BODY, HEADERS)
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return Response(status=304, headers={k: v for k, v in headers.items()
                                             if k in ("ETag", "Cache-Control", "Vary")})
    return Response(body, headers=headers)
