#!/usr/bin/env python3
"""Change latency and memory against the number of posts, as one SVG, from
bench/run.py results (docs/PERFORMANCE.md shows it).

    .venv/bin/python bench/plot.py bench/results/a.json [b.json …] --out docs/scale.svg

Each file's rows are taken as measured; where two files have the same figure
for the same size, the later file wins. Standard library only: the chart is
a few lines and dots on a log scale, which needs no plotting library.
"""

from __future__ import annotations

import argparse
import json
import math
from html import escape
from pathlib import Path

LATENCY = {"change latency, new post": ("new", "#1f77b4"),
           "change latency, edited post": ("edited", "#ff7f0e"),
           "change latency, deleted post": ("deleted", "#2ca02c")}
MEMORY = {"peak RSS, master + workers": ("master + 2 workers", "#d62728"),
          "peak RSS, largest worker": ("largest worker", "#9467bd")}
# Issue 12's targets, drawn as dashed steps: (from posts, to posts, bound).
LATENCY_TARGETS = [(20000, 20000, 0.2), (1000000, 1000000, 0.3)]
MEMORY_TARGETS = [(20000, 20000, 200.0), (1000000, 1000000, 300.0)]
W, H = 900, 380
PANEL_W, TOP, BOTTOM, LEFT = 380, 40, 70, 60


def load(files: list[Path]) -> tuple[dict[tuple[str, int], float], list[str]]:
    values: dict[tuple[str, int], float] = {}
    notes: list[str] = []
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        env = data["environment"]
        sizes = sorted({int(r["posts"]) for r in data["rows"]})
        load_avg = "–".join(f"{env[k][0]:.1f}" for k in ("loadavg_at_start", "loadavg_at_end"))
        runs = data.get("settings", {}).get("runs", "?")
        notes.append(f"{', '.join(f'{s:,}' for s in sizes)} posts: {env['date']}, "
                     f"commit {env['commit']}, load {load_avg}, runs={runs}")
        for r in data["rows"]:
            values[(str(r["metric"]), int(r["posts"]))] = float(r["value"])
    return values, notes


def panel(x0: float, title: str, unit: str, series: dict[str, tuple[str, str]],
          targets: list[tuple[int, int, float]], values: dict[tuple[str, int], float],
          sizes: list[int]) -> list[str]:
    plot_h = H - TOP - BOTTOM
    top = max([v for (m, _), v in values.items() if m in series] + [t[2] for t in targets])
    top = _nice(top * 1.15)
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes))

    def x(n: float) -> float:
        return x0 + LEFT + (math.log10(n) - lo) / ((hi - lo) or 1) * (PANEL_W - LEFT - 20)

    def y(v: float) -> float:
        return TOP + plot_h - v / top * plot_h

    out = [f'<text x="{x0 + LEFT}" y="{TOP - 16}" class="title">{escape(title)}</text>',
           f'<line x1="{x0 + LEFT}" y1="{TOP + plot_h}" x2="{x0 + PANEL_W - 10}" '
           f'y2="{TOP + plot_h}" class="axis"/>',
           f'<line x1="{x0 + LEFT}" y1="{TOP}" x2="{x0 + LEFT}" y2="{TOP + plot_h}" class="axis"/>']
    steps = 4 if float(f"{top / 4:.1g}") == top / 4 else 5
    for i in range(steps + 1):
        v = top * i / steps
        out.append(f'<text x="{x0 + LEFT - 6}" y="{y(v) + 4:.1f}" class="tick" '
                   f'text-anchor="end">{_label(v)}</text>')
        out.append(f'<line x1="{x0 + LEFT}" y1="{y(v):.1f}" x2="{x0 + PANEL_W - 10}" '
                   f'y2="{y(v):.1f}" class="grid"/>')
    for n in sizes:
        out.append(f'<text x="{x(n):.1f}" y="{TOP + plot_h + 16}" class="tick" '
                   f'text-anchor="middle">{_posts(n)}</text>')
    out.append(f'<text x="{x0 + LEFT + (PANEL_W - LEFT) / 2}" y="{TOP + plot_h + 34}" '
               f'class="tick" text-anchor="middle">posts (log scale); {escape(unit)}</text>')
    for lo_n, hi_n, bound in targets:
        if lo_n in sizes:
            out.append(f'<line x1="{x(lo_n) - 14:.1f}" y1="{y(bound):.1f}" x2="{x(hi_n) + 14:.1f}"'
                       f' y2="{y(bound):.1f}" class="target"><title>target ≤ {bound:g} {unit}'
                       f'</title></line>')
    for row, (metric, (name, colour)) in enumerate(series.items()):
        points = [(n, values[(metric, n)]) for n in sizes if (metric, n) in values]
        if len(points) > 1:
            path = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"/>')
        for n, v in points:
            out.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{name}, {n:,} posts: {_label(v)} {unit}</title></circle>')
            out.append(f'<text x="{x(n) + 5:.1f}" y="{y(v) - 5:.1f}" class="value" '
                       f'fill="{colour}">{_label(v)}</text>')
        ly = TOP + 4 + row * 16
        out.append(f'<rect x="{x0 + LEFT + 10}" y="{ly}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x0 + LEFT + 25}" y="{ly + 9}" class="tick">{escape(name)}</text>')
    ly = TOP + 4 + len(series) * 16
    out.append(f'<line x1="{x0 + LEFT + 10}" y1="{ly + 5}" x2="{x0 + LEFT + 20}" y2="{ly + 5}" '
               f'class="target"/><text x="{x0 + LEFT + 25}" y="{ly + 9}" class="tick">'
               f'target (issue 12)</text>')
    return out


def _nice(v: float) -> float:
    exp = 10 ** math.floor(math.log10(v))
    return next(m * exp for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * exp >= v)


def _label(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"


def _posts(n: int) -> str:
    return f"{n // 1000000}M" if n >= 1000000 else f"{n // 1000}k"


def svg(values: dict[tuple[str, int], float], notes: list[str]) -> str:
    sizes = sorted({n for _, n in values})
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H + 16 * len(notes)}" '
        f'width="{W}" height="{H + 16 * len(notes)}" font-family="sans-serif" font-size="12">',
        "<style>.axis{stroke:#333}.grid{stroke:#ddd}.title{font-size:14px;font-weight:bold}"
        ".tick{fill:#333}.value{font-size:11px}.target{stroke:#000;stroke-dasharray:4 3;"
        "stroke-width:1.5}</style>",
        f'<rect width="{W}" height="{H + 16 * len(notes)}" fill="white"/>',
        *panel(0, "change → served (median of the runs)", "seconds", LATENCY, LATENCY_TARGETS,
               values, sizes),
        *panel(W / 2, "peak RSS (VmHWM)", "MB", MEMORY, MEMORY_TARGETS, values, sizes),
    ]
    for i, note in enumerate(notes):
        parts.append(f'<text x="{LEFT}" y="{H - 8 + 16 * i}" class="tick">{escape(note)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="bench/run.py result files")
    p.add_argument("--out", type=Path, default=Path("docs/scale.svg"))
    args = p.parse_args(argv)
    values, notes = load(args.results)
    args.out.write_text(svg(values, notes), encoding="utf-8")
    print(f"plot: {len(values)} figures → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
