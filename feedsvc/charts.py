"""Subscriber charts as SVG made on the server (no script, nothing external):
one bar per day, the total of aggregator subscribers and direct readers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from feedsvc.subscriber_store import DayCount

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 180, 44, 24, 12


def days_ending(last: dt.date, count: int) -> list[str]:
    return [(last - dt.timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def totals(counts: Sequence[DayCount], path: str, days: Sequence[str]) -> list[int]:
    by_day = {c.day: c.total for c in counts if c.path == path}
    return [by_day.get(day, 0) for day in days]


def chart(title: str, days: Sequence[str], values: Sequence[int]) -> str:
    """An SVG bar chart of `values` over `days` (oldest first)."""
    top = max(values, default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(days), 1)
    bars = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        h = plot_h * value / top
        x, y = LEFT + i * step, TOP + plot_h - h
        bars.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{h:.1f}" data-day="{day}" data-value="{value}">'
                    f"<title>{day}: {value}</title></rect>")
    first, last = (days[0], days[-1]) if days else ("", "")
    label = escape(f"{title}: subscribers per day, {first} to {last}, at most {max(values, default=0)}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{label}" class="chart">'
            f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" class="axis"/>'
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" class="axis"/>'
            f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" class="tick">{top}</text>'
            f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>'
            f'<text x="{LEFT}" y="{HEIGHT - 6}" class="tick">{first}</text>'
            f'<text x="{WIDTH - 8}" y="{HEIGHT - 6}" text-anchor="end" class="tick">{last}</text>'
            + "".join(bars) + "</svg>")
