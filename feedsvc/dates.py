"""The one date normaliser: every date — front matter, file names, upstream
items — becomes an aware datetime with a fixed UTC offset, inside the range
every zone and every writer can handle (`in_range`).

Nothing here reads the host's time zone or the clock. Naive values take the
wall time of the zone that applies to the post, with that zone's DST rules;
a time in a DST gap or overlap takes the offset in force before the change
(fold=0), as DESIGN.md says.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import parser as dateutil_parser

UTC_NAMES = frozenset({"UTC", "GMT", "UT", "Z"})
# "GMT+3" means UTC-3 to dateutil (POSIX); a news editor means the opposite.
AMBIGUOUS_OFFSET = re.compile(r"\b(?:GMT|UTC|UT)\s*[+-]\d", re.IGNORECASE)
# Jekyll takes 2017-2-5- and 22-03-05- too (Document::DATE_FILENAME_MATCHER).
FILENAME_DATE = re.compile(r"^(\d{2,4})-(\d{1,2})-(\d{1,2})-")
_PROBE_A = dt.datetime(1901, 1, 1)
_PROBE_B = dt.datetime(1902, 2, 2)
# Jekyll's own shape, `2022-03-21 06:00:08 +0800`: read without dateutil, which
# costs a third of reading a post (bench/, docs/PERFORMANCE.md).
JEKYLL_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d) ?([+-])(\d\d):?(\d\d)")
MIN_YEAR, MAX_YEAR = 2, 9998
# A year written with its century ("0001"), outside an offset ("+0000").
FULL_YEAR = re.compile(r"(?<![\d+-])(\d{4})(?![\d:])")


class DateError(ValueError):
    """A value that is not a usable date; the message names the value."""


class DateRangeError(DateError):
    """A date that was read, but lies outside the years every zone can hold."""


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def localize(naive: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """Wall time in `tz` → fixed-offset aware datetime (fold=0 in gaps and overlaps)."""
    offset = naive.replace(tzinfo=tz, fold=0).utcoffset()
    assert offset is not None
    return naive.replace(tzinfo=dt.timezone(offset))


def _fixed(value: dt.datetime) -> dt.datetime:
    offset = value.utcoffset()
    assert offset is not None
    return value.replace(tzinfo=dt.timezone(offset))


def _tzinfos(name: str | None, offset: int | None) -> dt.tzinfo | None:
    # Called by dateutil for every zone it sees; abbreviations other than UTC
    # are refused because dateutil would resolve them against the host's zone.
    if name is None:
        return None if offset is None else dt.timezone(dt.timedelta(seconds=offset))
    if name.upper() in UTC_NAMES:
        return dt.UTC
    raise DateError(f"unknown time zone abbreviation {name!r} (write a numeric offset)")


def parse_string(text: str, tz: ZoneInfo) -> dt.datetime:
    text = text.strip()
    if not text:
        raise DateError("empty date")
    m = JEKYLL_DATE.fullmatch(text)
    if m:
        with contextlib.suppress(ValueError):  # out-of-range fields: dateutil says why
            return in_range(_jekyll(m), text)
    if AMBIGUOUS_OFFSET.search(text):
        raise DateError(f"ambiguous offset in date {text!r} (write e.g. +0800)")
    try:
        a = dateutil_parser.parse(text, default=_PROBE_A, tzinfos=_tzinfos)
        b = dateutil_parser.parse(text, default=_PROBE_B, tzinfos=_tzinfos)
    except DateError:
        raise
    except (ValueError, ArithmeticError) as e:
        # ArithmeticError: OverflowError, and decimal.InvalidOperation, which
        # dateutil raises for a long run of digits (found by the fuzzer).
        raise DateError(f"cannot parse date {text[:100]!r}") from e
    if a.date() != b.date():
        # dateutil fills missing parts from the default: the string has no
        # full calendar date and would silently become "today".
        raise DateError(f"date {text!r} has no full calendar date")
    a = _with_written_century(a, text)
    return in_range(_fixed(a) if a.tzinfo else localize(a, tz), text)


def _with_written_century(value: dt.datetime, text: str) -> dt.datetime:
    """dateutil reads the year of `Mon, 01 Jan 0001` as 2001 (a two-digit year);
    a year written with four digits means that year (issue 15)."""
    written = [int(y) for y in FULL_YEAR.findall(text)]
    if not written or value.year in written:
        return value
    for year in written:
        if year % 100 == value.year % 100:
            if not MIN_YEAR <= year <= MAX_YEAR:
                raise DateRangeError(f"date {text!r} is out of range (years {MIN_YEAR}-{MAX_YEAR})")
            try:
                return value.replace(year=year)
            except ValueError as e:      # 29 February of a year that has none
                raise DateError(f"cannot parse date {text!r}") from e
    return value


def from_utc_struct(parsed: time.struct_time, source: Any) -> dt.datetime:
    """A UTC `struct_time` (feedparser's `*_parsed`) → aware UTC datetime, checked
    as every other date is."""
    try:
        value = dt.datetime(*parsed[:6], tzinfo=dt.UTC)
    except (ValueError, OverflowError, TypeError) as e:
        raise DateRangeError(f"date {source!s} is out of range") from e
    return in_range(writable(in_range(value, source)), source)


def _jekyll(m: re.Match[str]) -> dt.datetime:
    y, mo, d, h, mi, sec, sign, oh, om = m.groups()
    offset = dt.timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec),
                       tzinfo=dt.timezone(offset))


def writable(value: dt.datetime) -> dt.datetime:
    """The instant as all three formats can write it alike: whole seconds (RSS has
    no fractions), and an offset in whole minutes (local mean time, such as
    Asia/Shanghai's +08:05:43 before 1901, goes to UTC)."""
    value = value.replace(microsecond=0)
    offset = value.utcoffset()
    if offset is not None and offset.total_seconds() % 60:
        return value.astimezone(dt.UTC)
    return value


def normalise(value: Any, tz: ZoneInfo) -> dt.datetime:
    """Any of PyYAML's date shapes (str, aware/naive datetime, date) → aware datetime."""
    # Checked again once written: going to UTC (local mean time) may cross into year 1.
    return in_range(writable(in_range(_normalise(value, tz), value)), value)


def _normalise(value: Any, tz: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return _fixed(value) if value.tzinfo else localize(value, tz)
    if isinstance(value, dt.date):
        return localize(dt.datetime(value.year, value.month, value.day), tz)
    if isinstance(value, str):
        return parse_string(value, tz)
    raise DateError(f"cannot parse date {value!r}")


def in_range(value: dt.datetime, source: Any) -> dt.datetime:
    """Refuse instants at the edge of datetime's range: converting `0001-01-01
    +0800` to UTC or to another zone overflows, and one post (or one upstream
    item) must not stop a scan or a source."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise DateRangeError(f"date {source!s} is out of range (years {MIN_YEAR}-{MAX_YEAR})")
    return value


def jekyll(value: dt.datetime) -> str:
    """`2022-03-21 06:00:08 +0800`, the year always in four digits (strftime's %Y
    writes year 2 as `2` with glibc)."""
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value:%H:%M:%S} {value:%z}")


def filename_year(digits: str) -> int:
    """The year of a file-name date as Ruby's Time.parse reads it: two digits
    are 1969-2068 (`69-1-2` → 1969, `22-3-5` → 2022), three or four as written."""
    year = int(digits)
    if len(digits) == 2:
        year += 1900 if year >= 69 else 2000
    return year


def from_filename(name: str, tz: ZoneInfo) -> dt.datetime | None:
    """Local midnight of the YYYY-MM-DD- prefix of a post's file name, if any
    (a two-digit year as Ruby reads it: 69-99 → 19xx, 00-68 → 20xx)."""
    m = FILENAME_DATE.match(name)
    if not m:
        return None
    try:
        day = dt.datetime(filename_year(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as e:
        raise DateError(f"file name has an invalid date {m.group(0)[:-1]!r}") from e
    return in_range(writable(in_range(localize(day, tz), m.group(0)[:-1])), m.group(0)[:-1])


def rfc822(value: dt.datetime) -> str:
    """RSS date with a numeric offset; locale-independent (unlike strftime %a/%b)."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return (f"{days[value.weekday()]}, {value.day:02d} {months[value.month - 1]} "
            f"{value.year:04d} {value:%H:%M:%S} {value:%z}")


def rfc3339(value: dt.datetime) -> str:
    return value.isoformat(timespec="seconds")


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
