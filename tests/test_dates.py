"""The one date normaliser (DESIGN.md "Date semantics"), as a table of awkward
inputs, checked in this process and again under several host TZ values."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dateutil import parser as dateutil_parser
from hypothesis import given, settings
from hypothesis import strategies as st

from feedsvc import dates

UTC = dt.UTC
SH = "Asia/Shanghai"
NY = "America/New_York"
BERLIN = "Europe/Berlin"

# (case, value as PyYAML hands it over, zone of the post, expected RFC 3339 or "!" + error)
TABLE: list[tuple[str, Any, str, str]] = [
    # the four PyYAML shapes
    ("jekyll string", "2022-03-21 06:00:08 +0800", SH, "2022-03-21T06:00:08+08:00"),
    ("aware datetime", dt.datetime(2022, 3, 21, 6, 0, 8, tzinfo=dt.timezone(dt.timedelta(hours=8))),
     NY, "2022-03-21T06:00:08+08:00"),
    ("naive datetime", dt.datetime(2022, 3, 21, 6, 0, 8), SH, "2022-03-21T06:00:08+08:00"),
    ("date", dt.date(2022, 3, 21), SH, "2022-03-21T00:00:00+08:00"),
    # explicit offsets are kept as written, whatever the post's zone
    ("offset kept in another zone", "2022-03-21 06:00:08 +0800", BERLIN,
     "2022-03-21T06:00:08+08:00"),
    ("offset +0545", "2022-03-21 06:00:08 +0545", SH, "2022-03-21T06:00:08+05:45"),
    ("offset -0500", "2022-03-21T06:00:08-05:00", SH, "2022-03-21T06:00:08-05:00"),
    ("zulu", "2022-03-21T06:00:08Z", SH, "2022-03-21T06:00:08+00:00"),
    ("UTC word", "2022-03-21 06:00:08 UTC", SH, "2022-03-21T06:00:08+00:00"),
    ("RFC 822 GMT", "Mon, 21 Mar 2022 06:00:08 GMT", SH, "2022-03-21T06:00:08+00:00"),
    # naive wall time in the category's or site's zone, with its DST rules
    ("naive string in Shanghai", "2022-03-21 06:00:08", SH, "2022-03-21T06:00:08+08:00"),
    ("naive string NY winter", "2022-01-10 12:00", NY, "2022-01-10T12:00:00-05:00"),
    ("naive string NY summer", "2022-07-10 12:00", NY, "2022-07-10T12:00:00-04:00"),
    ("naive string Berlin summer", "2022-07-10 12:00", BERLIN, "2022-07-10T12:00:00+02:00"),
    ("other dateutil format", "March 21, 2022 6:00 AM", SH, "2022-03-21T06:00:00+08:00"),
    # DST gap and fold: the offset in force before the change (fold=0)
    ("NY gap", "2022-03-13 02:30:00", NY, "2022-03-13T02:30:00-05:00"),
    ("NY gap datetime", dt.datetime(2022, 3, 13, 2, 30), NY, "2022-03-13T02:30:00-05:00"),
    ("NY fold", "2022-11-06 01:30:00", NY, "2022-11-06T01:30:00-04:00"),
    ("Berlin gap", "2022-03-27 02:30:00", BERLIN, "2022-03-27T02:30:00+01:00"),
    ("Berlin fold", dt.datetime(2022, 10, 30, 2, 30), BERLIN, "2022-10-30T02:30:00+02:00"),
    # date only → local midnight there
    ("date-only string", "2022-03-21", NY, "2022-03-21T00:00:00-04:00"),
    ("date-only Berlin", dt.date(2022, 3, 21), BERLIN, "2022-03-21T00:00:00+01:00"),
    # refused
    ("unparseable", "next tuesday-ish", SH, "!cannot parse date"),
    ("empty", "  ", SH, "!empty date"),
    ("time only", "10:30", SH, "!no full calendar date"),
    ("month only", "2022-03", SH, "!no full calendar date"),
    ("day without year", "Mar 21", SH, "!no full calendar date"),
    ("EST", "2022-03-21 10:00 EST", SH, "!unknown time zone abbreviation 'EST'"),
    ("CST", "2022-03-21 10:00 CST", SH, "!unknown time zone abbreviation 'CST'"),
    ("abbreviation alone", "EST", SH, "!cannot parse date"),
    ("GMT+3", "2022-03-21 10:00 GMT+3", SH, "!ambiguous offset"),
    ("impossible day", "2022-02-30", SH, "!cannot parse date"),
    ("YAML sexagesimal 10:30", 630, SH, "!cannot parse date"),
    ("out of range low", "0001-01-01 00:00:00 +0800", SH, "!out of range"),
    ("out of range high", dt.datetime(9999, 12, 31, 23, 0), NY, "!out of range"),
    ("a list", ["2022-03-21"], SH, "!cannot parse date"),
]

# (case, file name, zone, expected RFC 3339, None when there is no date prefix, or "!" + error)
FILENAMES: list[tuple[str, str, str, str | None]] = [
    ("filename date", "2022-03-21-anning.md", SH, "2022-03-21T00:00:00+08:00"),
    ("filename date NY", "2022-07-04-parade.md", NY, "2022-07-04T00:00:00-04:00"),
    ("filename date Berlin winter", "2022-01-04-x.html", BERLIN, "2022-01-04T00:00:00+01:00"),
    ("no prefix", "about.md", SH, None),
    ("invalid prefix", "2022-02-30-x.md", SH, "!invalid date"),
]


def run_table() -> dict[str, str | None]:
    """Every case of both tables → its RFC 3339 result or "!" + error message."""
    out: dict[str, str | None] = {}
    for case, value, zone, _ in TABLE:
        try:
            out[case] = dates.rfc3339(dates.normalise(value, dates.zone(zone)))
        except dates.DateError as e:
            out[case] = f"!{e}"
    for case, name, zone, _ in FILENAMES:
        try:
            got = dates.from_filename(name, dates.zone(zone))
            out[case] = None if got is None else dates.rfc3339(got)
        except dates.DateError as e:
            out[case] = f"!{e}"
    return out


def _matches(got: str | None, expected: str | None) -> bool:
    if expected is None or got is None or not expected.startswith("!"):
        return got == expected
    return got.startswith("!") and expected[1:] in got


@pytest.mark.parametrize(("case", "value", "zone", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_normalise(case: str, value: Any, zone: str, expected: str) -> None:
    assert _matches(run_table()[case], expected)


@pytest.mark.parametrize(("case", "name", "zone", "expected"), FILENAMES,
                         ids=[t[0] for t in FILENAMES])
def test_from_filename(case: str, name: str, zone: str, expected: str | None) -> None:
    assert _matches(run_table()[case], expected)


def test_results_are_aware_with_a_fixed_offset() -> None:
    value = dates.normalise("2022-11-06 01:30:00", dates.zone(NY))
    assert isinstance(value.tzinfo, dt.timezone)
    assert value.utcoffset() == dt.timedelta(hours=-4)


def test_refusal_names_the_value() -> None:
    with pytest.raises(dates.DateError, match="next tuesday-ish"):
        dates.parse_string("next tuesday-ish", dates.zone(SH))


@pytest.mark.parametrize("host_tz", ["UTC", "Asia/Kathmandu", "America/Los_Angeles",
                                     "Pacific/Chatham"])
def test_table_is_the_same_under_every_host_tz(host_tz: str) -> None:
    """Nothing reads the host's zone: the whole table, run in a fresh process
    with another TZ, gives exactly what it gives here."""
    env = {**os.environ, "TZ": host_tz}
    proc = subprocess.run([sys.executable, str(Path(__file__))], env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout) == run_table()


@pytest.mark.parametrize(("value", "rss", "atom"), [
    ("2022-03-21 06:00:08 +0800", "Mon, 21 Mar 2022 06:00:08 +0800", "2022-03-21T06:00:08+08:00"),
    ("2022-11-06 01:30:00 -0400", "Sun, 06 Nov 2022 01:30:00 -0400", "2022-11-06T01:30:00-04:00"),
    ("2022-03-21 06:00:08 +0545", "Mon, 21 Mar 2022 06:00:08 +0545", "2022-03-21T06:00:08+05:45"),
    ("2022-12-31 23:59:59 Z", "Sat, 31 Dec 2022 23:59:59 +0000", "2022-12-31T23:59:59+00:00"),
    ("2022-03-21 06:00:08.75 +0800", "Mon, 21 Mar 2022 06:00:08 +0800",
     "2022-03-21T06:00:08+08:00"),
])
def test_rfc3339(value: str, rss: str, atom: str) -> None:
    # The RSS form (RFC 822, as feedgen writes it in writers.py) shows the offset
    # kept as written; tests/test_writers.py checks feedgen's output against it.
    when = dates.normalise(value, dates.zone(SH))
    assert email.utils.format_datetime(when) == rss
    assert dates.rfc3339(when) == atom


def _via_dateutil(text: str, tz: str) -> dt.datetime:
    parsed = dateutil_parser.parse(text, tzinfos=dates._tzinfos)
    return dates._fixed(parsed) if parsed.tzinfo else dates.localize(parsed, dates.zone(tz))


@settings(deadline=None)   # a shared, loaded machine: no per-example timing
@given(when=st.datetimes(min_value=dt.datetime(1902, 1, 1), max_value=dt.datetime(2100, 1, 1)),
       offset=st.sampled_from(["", " +0800", "+08:00", " -0500", "-03:30", "Z", " UTC"]),
       shape=st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                              "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d"]),
       tz=st.sampled_from([SH, NY, BERLIN]))
def test_fast_path_agrees_with_dateutil(when: dt.datetime, offset: str, shape: str,
                                        tz: str) -> None:
    # Jekyll and RFC 3339 strings skip dateutil; the result must be the same.
    text = when.strftime(shape) + (offset if "H" in shape else "")
    fast = dates.parse_string(text, dates.zone(tz))
    slow = _via_dateutil(text, tz)
    assert (fast, fast.utcoffset()) == (slow, slow.utcoffset())


if __name__ == "__main__":  # run by test_table_is_the_same_under_every_host_tz
    print(json.dumps(run_table()))
