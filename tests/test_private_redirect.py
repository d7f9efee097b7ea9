"""`allow_private_sources: false` against a redirect whose target is really
private (issue 13's bad input): in a network namespace of the test's own
(`unshare --net`, iproute2), a "public" upstream at a global address and a
private host at 10.0.0.1 that serves a real feed, both reachable. The
redirecting source fails and is reported, the private host is never asked,
and the other source is still collected. Nothing outside the namespace sees
these addresses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_site
from upstream_support import FIXTURES

PUBLIC = "93.184.216.34"        # a global address, inside the namespace only
PRIVATE = "10.0.0.1"

# Runs inside the namespace: both hosts, then `feedsvc collect` against them.
SCENARIO = r'''
import json, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

feed = open(sys.argv[1], "rb").read()
hits = {"public": [], "private": []}

def handler(name):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            hits[name].append(self.path)
            if self.path == "/moved.xml":
                self.send_response(302)
                self.send_header("Location", "http://%s/feed.xml" % sys.argv[3])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(feed)))
            self.end_headers()
            self.wfile.write(feed)
    return H

for name, host in (("public", sys.argv[2]), ("private", sys.argv[3])):
    server = ThreadingHTTPServer((host, 80), handler(name))
    threading.Thread(target=server.serve_forever, daemon=True).start()
run = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config", sys.argv[4]],
                     capture_output=True, text=True, timeout=120)
print(json.dumps({"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr,
                  "hits": hits}))
'''


def in_namespace(config: Path) -> dict[str, object]:
    setup = (f"ip link set lo up && ip addr add {PUBLIC}/32 dev lo && "
             f"ip addr add {PRIVATE}/32 dev lo && exec \"$0\" \"$@\"")
    run = subprocess.run(
        ["unshare", "--net", "sh", "-c", setup, sys.executable, "-c", SCENARIO,
         str(FIXTURES / "rss.xml"), PUBLIC, PRIVATE, str(config)],
        capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout)
    return result


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None,
                    reason="needs util-linux unshare and iproute2")
def test_a_redirect_to_a_private_host_is_refused_and_the_other_source_collected(
        tmp_path: Path) -> None:
    cfg = make_site(tmp_path / "site", config={
        "allow_private_sources": False,
        "categories": {"kunmingribao": {"title": "昆明日报新闻", "sources": [
            f"http://{PUBLIC}/moved.xml"]},
            "world": {"title": "World", "sources": [f"http://{PUBLIC}/feed.xml"]}}})
    out = in_namespace(cfg)
    stdout = str(out["stdout"])
    assert out["rc"] == 1, out                      # a source failed: exit 1
    # The redirecting source is reported with the private host and why …
    assert (f"kunmingribao http://{PUBLIC}/moved.xml: failed: refused {PRIVATE}: a private, "
            "loopback or link-local address (allow_private_sources is false)") in stdout, out
    # … the private host, though reachable and serving a feed, is never asked …
    hits: dict[str, list[str]] = out["hits"]  # type: ignore[assignment]
    assert sorted(hits["public"]) == ["/feed.xml", "/moved.xml"] and hits["private"] == [], hits
    # … and the other source is collected.
    assert f"world http://{PUBLIC}/feed.xml: 3 new" in stdout, out
    assert "2 source(s): 1 answered, 1 failed, 3 new post(s)" in stdout, out
    posts = cfg.parent / "_posts"
    stored = sorted(p.relative_to(posts).parts[0] for p in posts.rglob("*.md"))
    assert stored == ["world"] * 3, stored
