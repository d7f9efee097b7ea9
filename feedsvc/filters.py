"""RSSHub's filter options as patterns of RE2, a linear-time engine.

A client's pattern runs against our posts on every cache miss, so it must
never be able to take exponential time: Python's `re` backtracks (`(a+)+$`
against forty a's and a `b` takes minutes), RE2 (google-re2) runs in time
linear in the text whatever the pattern, and refuses what it cannot run that
way (back-references, look-around) — a refusal the client gets as a 400.

Values are split on commas outside `[...]`, `{...}` and `\\,`, so `a,b` (the
old term list) still means `a|b` while `a{1,3}` stays one pattern.
Case-insensitivity is the engine's flag, never a folded pattern: folding
would turn `\\W` into `\\w`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import re2

from feedsvc.errors import QueryError

# filter_<field> / filterout_<field>, as RSSHub names them.
FIELDS = ("title", "description", "author", "category")
MAX_ALTERNATIVES = 20
MAX_PATTERN_LENGTH = 500      # characters per parameter, all alternatives together
MAX_PROGRAM_BYTES = 4 * 2**20  # RE2's memory budget per compiled pattern


@dataclass(frozen=True)
class Pattern:
    """One parameter's value: its alternatives, canonical (stripped, sorted,
    deduplicated), so that equivalent URLs share a key."""
    alternatives: tuple[str, ...]

    def text(self) -> str:
        return ",".join(self.alternatives)

    def search(self, texts: Iterable[str], case_sensitive: bool) -> bool:
        regex = compiled(self.alternatives, case_sensitive)
        return any(regex.search(t) is not None for t in texts)


def split_alternatives(value: str) -> list[str]:
    """Split on the commas that are not inside a class, a repetition or escaped."""
    parts, current, depth_class, depth_brace, escaped = [], [], 0, 0, False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif ch == "[" and not depth_class:
            depth_class = 1
        elif ch == "]" and depth_class:
            depth_class = 0
        elif ch == "{" and not depth_class:
            depth_brace += 1
        elif ch == "}" and depth_brace and not depth_class:
            depth_brace -= 1
        elif ch == "," and not depth_class and not depth_brace:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse(values: list[str], name: str) -> Pattern:
    """The pattern of one parameter (given once or several times): QueryError
    naming the parameter when it is empty, too long, or refused by RE2."""
    alternatives = sorted({a.strip() for v in values for a in split_alternatives(v)} - {""})
    if not alternatives:
        raise QueryError(f"{name} needs a pattern (a word, a regular expression, "
                         "or several separated by commas)")
    if len(alternatives) > MAX_ALTERNATIVES or sum(map(len, alternatives)) > MAX_PATTERN_LENGTH:
        raise QueryError(f"{name} allows at most {MAX_ALTERNATIVES} alternatives of "
                         f"{MAX_PATTERN_LENGTH} characters in all")
    for alternative in alternatives:
        # Each one alone first: wrapped in (?:…) a stray ")" could pair up across two.
        _compile(alternative, name)
    _compile(_join(tuple(alternatives)), name)
    return Pattern(tuple(alternatives))


def _join(alternatives: tuple[str, ...]) -> str:
    return "|".join(f"(?:{a})" for a in alternatives)


def _compile(pattern: str, name: str) -> None:
    try:
        compiled((pattern,), True)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) \
            else str(e)
        raise QueryError(f"{name}: {pattern!r} is not a pattern RE2 accepts ({reason}); "
                         "back-references and look-around are not supported") from e


@lru_cache(maxsize=128)
def compiled(alternatives: tuple[str, ...], case_sensitive: bool) -> re2._Regexp:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = MAX_PROGRAM_BYTES
    options.log_errors = False
    pattern = alternatives[0] if len(alternatives) == 1 else _join(alternatives)
    return re2.compile(pattern, options)


def parse_bool(values: list[str], name: str) -> bool:
    value = values[-1].strip().lower() if len(set(values)) == 1 else ""
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise QueryError(f"{name} must be true or false")
