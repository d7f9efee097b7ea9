"""The benchmark suite, end to end on a tiny corpus with one run of each
measurement, so that it cannot rot. Nothing here asserts a speed: bench/run.py
measures those (docs/PERFORMANCE.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

EVERY_MEASUREMENT = {
    "cold start, saved index", "cold start, no saved index",
    "change latency, new post", "change latency, edited post", "change latency, deleted post",
    "idle CPU per 10 s",
    "cached 200 throughput", "cached 200 p99 latency",
    "cached 200 gzip throughput", "cached 200 gzip p99 latency",
    "304 throughput", "304 p99 latency",
    "peak RSS, largest worker", "peak RSS, master + workers",
    "rescan, nothing changed",
    "build, no saved index", "build, saved index",
    "through nginx, cached 200 throughput", "feedsvc alone, cached 200 throughput",
    "through nginx, 304 throughput", "feedsvc alone, 304 throughput",
    "through nginx, worst of 20 requests beside 100 slow clients",
    "build after one new post", "files written after one new post",
}


@pytest.mark.timeout(300)
def test_bench_measures_everything_on_a_tiny_corpus(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--sizes", "50", "--runs", "1",
           "--idle-seconds", "1", "--load-seconds", "1", "--cache", str(tmp_path / "cache"),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert {r["metric"] for r in rows} == EVERY_MEASUREMENT
    for r in rows:
        assert r["posts"] == 50
        assert len(r["runs"]) >= 1 and r["value"] >= 0, r
        # Every figure stands next to a baseline from the same run.
        assert r["baseline_name"] and r["baseline_runs"], r
    tool = {r["note"] for r in rows if r["metric"].startswith(("cached 200", "304"))}
    assert tool == {"wrk, bench/http_bench.py" if shutil.which("wrk")
                    else "python load generator (no wrk)"}
    # The table on stdout carries every measurement.
    for metric in EVERY_MEASUREMENT:
        assert metric in proc.stdout
