#!/usr/bin/env python3
"""The cost of a hostile `filter=` pattern: Python's re against RE2 on
`(a+)+$` and a run of n a's followed by a b, and the answer time of a real
`feedsvc serve` to that filter on a feed whose entry has forty of them.

    .venv/bin/python bench/filters_bench.py [--max-seconds 20]

Python's re doubles its time with each extra `a`; it is timed up to the first
n that takes more than a second and extrapolated to 40 (stated as such).
Results go to stdout and bench/results/filters.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import re2
import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from support import BASE_CONFIG, make_site, post, running  # noqa: E402

PATTERN = r"(a+)+$"
N = 40


def python_re(n: int) -> float:
    regex = re.compile(PATTERN)
    start = time.perf_counter()
    regex.search("a" * n + "b")
    return time.perf_counter() - start


def engine_re2(n: int, runs: int = 100) -> float:
    regex = re2.compile(PATTERN)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        regex.search("a" * n + "b")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def python_series(max_seconds: float) -> list[tuple[int, float]]:
    series, n = [], 16
    while True:
        took = python_re(n)
        series.append((n, took))
        if took > max_seconds / 4 or n >= N:
            return series
        n += 1


def http_answer(runs: int = 5) -> tuple[float, float]:
    """(median seconds of the filtered request, of the same feed unfiltered)."""
    with tempfile.TemporaryDirectory() as tmp:
        posts = {"kunmingribao/2022-01-01-a.md": post("a" * N + "b", "2022-01-01 08:00:00 +0800")}
        config = make_site(Path(tmp) / "site", posts, config=BASE_CONFIG)
        with running(config) as server:
            def timed(query: str) -> float:
                times = []
                for i in range(runs):
                    # A new query each time: a cache miss, so the pattern really runs.
                    start = time.perf_counter()
                    resp = requests.get(f"{server.url}/feeds/kunmingribao.rss?{query}&limit={i + 1}",
                                        timeout=600)
                    times.append(time.perf_counter() - start)
                    assert resp.status_code == 200, resp.text
                return statistics.median(times)
            return timed("filter=(a%2B)%2B$"), timed("utm_source=x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-seconds", type=float, default=20,
                   help="stop timing Python's re once one run takes a quarter of this")
    args = p.parse_args()
    series = python_series(args.max_seconds)
    n_last, t_last = series[-1]
    # Geometric growth over the timed span (single runs are noisy on a shared machine).
    n_first, t_first = series[0]
    growth = (t_last / t_first) ** (1 / max(1, n_last - n_first))
    extrapolated = t_last * growth ** (N - n_last)
    filtered, plain = http_answer()
    result = {
        "pattern": PATTERN,
        "python_re_seconds": {str(n): round(t, 4) for n, t in series},
        "python_re_growth_per_a": round(growth, 3),
        "python_re_seconds_at_40_extrapolated": round(extrapolated, 1),
        "re2_seconds_at_40": engine_re2(N),
        "re2_seconds_at_100000": engine_re2(100_000, runs=10),
        "http_filtered_seconds": round(filtered, 4),
        "http_unfiltered_seconds": round(plain, 4),
    }
    out = BENCH / "results" / "filters.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"Python re, {PATTERN} on a*n+b: " + ", ".join(f"n={n} {t:.3f} s" for n, t in series))
    print(f"  ×{growth:.2f} per extra a → n=40 ≈ {extrapolated:,.0f} s (extrapolated)")
    print(f"RE2: n=40 {result['re2_seconds_at_40'] * 1e6:.1f} µs, "
          f"n=100,000 {result['re2_seconds_at_100000'] * 1e3:.2f} ms")
    print(f"HTTP, feedsvc serve, entry of 40 a's + b: filter=(a+)+$ {filtered * 1e3:.1f} ms, "
          f"same feed without a filter {plain * 1e3:.1f} ms (medians of 5 cache misses)")


if __name__ == "__main__":
    main()
