#!/usr/bin/env python3
"""feedsvc performance suite: cold start, change latency, idle CPU, build,
serving and memory on make_corpus.py corpora, each next to a baseline measured
in the same run.

    make bench                                   # 2,000 and 20,000 posts
    make bench BENCH_ARGS='--sizes 2000,20000,100000'
    .venv/bin/python bench/run.py --quick        # one run each, shorter load

Corpora are generated once into bench/.cache/; results go to
bench/results/latest.json and to stdout as one table. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measures  # noqa: E402
from harness import BENCH, REPO, corpus  # noqa: E402
from measures import Figure, Settings  # noqa: E402

MEASUREMENTS = ("cold", "serve", "build", "rescan", "nginx", "incremental")
# (metric, size) → (bound, kind); kind "max" for a value, "min-ratio" for a share of the
# baseline. Issue 12's table (20,000 and 1,000,000 posts) and the earlier ones.
TARGETS: dict[tuple[str, int], tuple[float, str]] = {
    **{(f"change latency, {op} post", 20000): (0.2, "max") for op in ("new", "edited", "deleted")},
    **{(f"change latency, {op} post", 100000): (2.0, "max") for op in ("new", "edited", "deleted")},
    **{(f"change latency, {op} post", 1000000): (0.3, "max")
       for op in ("new", "edited", "deleted")},
    ("cold start, saved index", 20000): (2.0, "max"),
    ("cold start, saved index", 1000000): (2.0, "max"),
    ("first indexing from nothing", 1000000): (600.0, "max"),
    ("idle CPU per 10 s", 20000): (0.2, "max"),
    ("idle CPU per 10 s", 1000000): (0.2, "max"),
    ("peak RSS, largest worker", 20000): (150.0, "max"),
    ("peak RSS, largest worker", 100000): (400.0, "max"),
    ("peak RSS, master + workers", 20000): (200.0, "max"),
    ("peak RSS, master + workers", 1000000): (300.0, "max"),
    # "Not below today's ratio to the minimal Flask app": the ratios of the last
    # release (docs/PERFORMANCE.md, 20,000 posts), which the baseline of this run scales.
    **{("cached 200 throughput", n): (1.0, "min-ratio") for n in (2000, 20000, 100000, 1000000)},
    **{("cached 200 gzip throughput", n): (1.0, "min-ratio")
       for n in (2000, 20000, 100000, 1000000)},
    **{("304 throughput", n): (1.0, "min-ratio") for n in (2000, 20000, 100000, 1000000)},
    # deploy/nginx in front of feedsvc, against nginx serving the exported file (issue 14).
    **{(f"through nginx, {case} throughput", n): (0.8, "min-ratio")
       for case in ("cached 200", "304") for n in (2000, 20000, 100000)},
    # feedsvc build into the same folder after one new post (issue 14).
    ("build after one new post", 20000): (2.0, "max"),
    ("files written after one new post", 20000): (30.0, "max"),
}
# Bytes of disk a corpus of N posts needs, with its index (make_corpus.py: ~7 kB a post
# in a 4 kB-block file system, the index about a third of that).
DISK_PER_POST = 10_000
LARGE = 1_000_000      # from this size: one run of the slow figures, no build


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,20000",
                   help="comma-separated corpus sizes (100000 and 1000000 are opt-in: "
                        "minutes, and 10 GB of disk for a million)")
    p.add_argument("--quick", action="store_true",
                   help="one run per figure, 2 s of load, 5 s idle window")
    p.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    p.add_argument("--only", default=",".join(MEASUREMENTS),
                   help=f"subset of {','.join(MEASUREMENTS)}")
    p.add_argument("--idle-seconds", type=float, help="idle CPU window (default 10)")
    p.add_argument("--load-seconds", type=float, help="wrk duration per run (default 5)")
    p.add_argument("--keep-index", action="store_true",
                   help="cold: only starts with the saved index (no first indexing; at a "
                        "million posts that is half an hour on a busy machine)")
    p.add_argument("--cache", type=Path, default=BENCH / ".cache", help="corpora and logs")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "latest.json")
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    s = Settings(runs=1, idle_seconds=5.0, wrk_seconds=2.0) if args.quick else Settings()
    if args.runs:
        s.runs = args.runs
    if args.idle_seconds:
        s.idle_seconds = args.idle_seconds
    if args.load_seconds:
        s.wrk_seconds = args.load_seconds
    return s


def check_disk(size: int, cache: Path) -> None:
    """Say what a corpus needs before writing one (a million posts is ~10 GB)."""
    config = cache / f"corpus-{size}" / "config.yaml"
    need = size * DISK_PER_POST * (0.4 if config.exists() else 1.0)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if free < need:
        raise SystemExit(f"bench: {size:,} posts need about {need / 1e9:.1f} GB free under "
                         f"{cache}; there are {free / 1e9:.1f} GB")


def measure_size(size: int, args: argparse.Namespace, s: Settings) -> list[Figure]:
    only = set(args.only.split(","))
    check_disk(size, args.cache)
    config = corpus(size, args.cache)
    logs = args.cache / f"logs-{size}"
    logs.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    if "cold" in only:
        fresh = 0 if args.keep_index else (1 if size >= LARGE else None)
        figures += measures.cold_start(config, logs, s, fresh_runs=fresh)
    if "serve" in only:
        figures += measures.running_server(config, logs, s)
    if "rescan" in only:
        figures.append(measures.rescan(config, s))
    if "nginx" in only and size < LARGE:
        import nginx_bench

        figures += nginx_bench.measure(config, logs, s)
    if "incremental" in only and size < LARGE:
        figures += measures.incremental_build(config, logs, s)
    if "build" in only and size < LARGE:
        # A build of 100,000 posts takes minutes; one run is enough to see it.
        figures += measures.build(config, logs, s, runs=s.runs if size < 100000 else 1)
    return figures


def verdict(fig: Figure, size: int) -> tuple[str, str]:
    """(target text, 'yes'/'NO'/'') for a figure."""
    target = TARGETS.get((fig.metric, size))
    if target is None:
        return "", ""
    bound, kind = target
    if kind == "min-ratio":
        today = TODAY_RATIO.get(fig.metric, bound)
        ok = fig.ratio is not None and fig.ratio >= today
        return f"≥ {today:.2f}× baseline (before issue 12)", "yes" if ok else "NO"
    if fig.metric == "peak RSS, master + workers" and size >= LARGE and SMALL_RSS:
        bound = min(bound, SMALL_RSS[0] + 100.0)
    return f"≤ {bound:g} {fig.unit}", "yes" if fig.value <= bound else "NO"


# The serving ratios to the minimal Flask app before issue 12 (docs/PERFORMANCE.md,
# 20,000 posts, commit b7f0214): "not below today's ratio".
TODAY_RATIO = {"cached 200 throughput": 1.57, "cached 200 gzip throughput": 1.39,
               "304 throughput": 2.04}
SMALL_RSS: list[float] = []   # the 20,000-post master + workers figure of this run


def row(fig: Figure, size: int) -> dict[str, object]:
    if fig.metric == "peak RSS, master + workers" and size == 20000:
        SMALL_RSS[:] = [fig.value]
    target, met = verdict(fig, size)
    return {
        "posts": size, "metric": fig.metric, "unit": fig.unit, "value": fig.value,
        "runs": fig.runs, "baseline_name": fig.baseline_name, "baseline": fig.baseline,
        "baseline_runs": fig.baseline_runs, "ratio": fig.ratio, "target": target, "met": met,
        "note": fig.note,
    }


def fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "–"
    assert isinstance(value, float | int)
    if unit == "req/s":
        return f"{value:,.0f}"
    if unit in ("MB", "µs", "files"):
        return f"{value:.0f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(rows: list[dict[str, object]]) -> str:
    head = ["posts", "measurement", "feedsvc", "baseline", "ratio", "target", "met", "baseline is"]
    lines = [[f"{r['posts']:,}", str(r["metric"]),
              f"{fmt(r['value'], str(r['unit']))} {r['unit']}",
              f"{fmt(r['baseline'], str(r['unit']))}",
              "–" if r["ratio"] is None else f"{r['ratio']:.2f}",  # type: ignore[str-format]
              str(r["target"]), str(r["met"]),
              str(r["baseline_name"] or "") + (f" ({r['note']})" if r["note"] else "")]
             for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(c) for c in lines)])


def environment() -> dict[str, object]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": commit, "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings(args)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    env = environment()
    rows: list[dict[str, object]] = []
    started = time.perf_counter()
    for size in sizes:
        print(f"bench: {size:,} posts …", file=sys.stderr, flush=True)
        rows += [row(f, size) for f in measure_size(size, args, s)]
    env["seconds"] = round(time.perf_counter() - started, 1)
    env["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": env, "settings": vars(s), "rows": rows},
                                   indent=1, ensure_ascii=False), encoding="utf-8")
    print(table(rows))
    print(f"\n{env['date']} commit {env['commit']}, {env['cpus']} CPUs, load "
          f"{env['loadavg_at_start']} → {env['loadavg_at_end']}; runs={s.runs}; "
          f"results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
