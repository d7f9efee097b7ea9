"""The one clock. Everything that asks "what time is it" takes a `Clock`, so
tests pass a fake one instead of patching the standard library."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
