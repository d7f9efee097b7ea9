"""Subscriber counts for people: the table `feedsvc stats` prints and the
admin page (`/admin/subscribers`, behind `admin_token`) with a chart per feed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from feedsvc.charts import chart, days_ending, totals
from feedsvc.subscriber_store import DayCount, SubscriberStore

PERIODS = (30, 90)


def latest(counts: Sequence[DayCount]) -> dict[str, DayCount]:
    """Per feed path, its latest day with any count."""
    out: dict[str, DayCount] = {}
    for c in sorted(counts, key=lambda c: c.day):
        out[c.path] = c
    return out


def table(counts: Sequence[DayCount]) -> str:
    """One line per feed: its latest day, each aggregator's count, direct readers, total."""
    rows = latest(counts)
    if not rows:
        return "no subscriber counts yet"
    names = sorted({n for c in rows.values() for n in c.aggregators})
    head = ["feed", "day", *names, "direct readers", "total"]
    lines = [[path, c.day, *[str(c.aggregators.get(n, 0)) for n in names], str(c.readers),
              str(c.total)] for path, c in sorted(rows.items(), key=lambda kv: (-kv[1].total, kv[0]))]
    widths = [max(_width(x) for x in col) for col in zip(head, *lines, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(_pad(c, w, i) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in lines)])


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int, column: int) -> str:
    fill = " " * (width - _width(text))
    return text + fill if column < 2 else fill + text


def page(store: SubscriberStore, today: dt.date, days: int, site_title: str) -> str:
    days_shown = days_ending(today, days)
    counts = store.days(days_shown[0])
    rows = latest(counts)
    periods = " · ".join(f'<a href="?days={n}">{n} days</a>' if n != days else f"<b>{n} days</b>"
                         for n in PERIODS)
    sections = []
    for path, last in sorted(rows.items(), key=lambda kv: (-kv[1].total, kv[0])):
        parts = "".join(f"<tr><td>{escape(name)}</td><td>{n}</td></tr>"
                        for name, n in sorted(last.aggregators.items(), key=lambda kv: -kv[1]))
        sections.append(
            f'<section class="feed" data-path="{escape(path)}"><h2>{escape(path)}</h2>'
            f'<p><span class="total">{last.total}</span> subscribers on {last.day} '
            f"({sum(last.aggregators.values())} through aggregators, {last.readers} direct readers)</p>"
            f"{chart(path, days_shown, totals(counts, path, days_shown))}"
            f'<table><tr><th>aggregator</th><th>subscribers</th></tr>{parts}'
            f"<tr><td>direct readers</td><td>{last.readers}</td></tr></table></section>")
    body = "".join(sections) or "<p>No subscriber counts yet.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Subscribers · {escape(site_title)}</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 0; background: #f6f7f9;
       color: #1d2330; }}
main {{ max-width: 46rem; margin: 0 auto; padding: 1rem; }}
section.feed {{ background: #fff; border: 1px solid #e3e7ec; border-radius: 8px; padding: .5rem 1rem;
               margin: 1rem 0; }}
h2 {{ font-size: 1.05rem; margin: .5rem 0; word-break: break-all; }}
.total {{ font-size: 1.4rem; font-weight: 600; }}
svg.chart {{ width: 100%; height: auto; }}
svg .bar {{ fill: #e4761b; }} svg .axis {{ stroke: #9aa5b3; }}
svg .tick {{ font-size: 11px; fill: #5f6b7a; }}
table {{ border-collapse: collapse; margin: .5rem 0; }}
td, th {{ padding: .15rem .8rem .15rem 0; text-align: left; }}
</style></head>
<body><main><h1>Subscribers · {escape(site_title)}</h1>
<p>Per day: the latest count each aggregator reports in its User-Agent, plus distinct direct
readers (hashed, no address kept). {periods}</p>
{body}
</main></body></html>
"""
