"""The one notion of "the current version" of what is served.

A document's bytes depend on the config (every field that changes output),
on which index the posts come from and on that index's generation (a post
added, changed or removed, or a future post come due). `Snapshot` holds the
three, read once per request by `take()`, together with the config and the
views they denote. Every cache (the service memo, replay.py, pages.py) files
what it made under `Snapshot.version`, and the WebSub publisher (schedule.py)
compares the same thing, so that no two of them can disagree on whether
something changed.

`Served` is what the service serves from: the config and the index, swapped
whole on a config reload, so that no request pairs a new config with an old
index or the other way round.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from feedsvc.config import Config
from feedsvc.index import Index, Views

Version = tuple[str, int, int, int]
_index_ids = itertools.count(1)


@dataclass(frozen=True)
class Served:
    config: Config
    index: Index
    index_id: int          # another Index (a reload that changes how posts are read) → another id
    config_digest: str     # every config field, posts_dir included
    content_digest: str    # the config's part of a document's store key (see content_digest)


def served(config: Config, index: Index, previous: Served | None = None) -> Served:
    """The served state for `config` and `index`; the index keeps its id when
    it is the one `previous` served."""
    index_id = previous.index_id if previous and previous.index is index else next(_index_ids)
    return Served(config, index, index_id, config_digest(config), content_digest(config))


@dataclass(frozen=True)
class Snapshot:
    """What a document's bytes depend on, as one immutable value."""
    config_digest: str
    index_id: int
    generation: int        # the shared index's generation (in its database)
    due: int               # the newest post date that has come (a future post come due)
    config: Config = field(compare=False, repr=False)
    views: Views = field(compare=False, repr=False)
    content_digest: str = field(compare=False, repr=False)

    @property
    def version(self) -> Version:
        """The key caches file their documents under (small: it keeps no views alive)."""
        return (self.config_digest, self.index_id, self.generation, self.due)


def take(state: Served) -> Snapshot:
    """The current snapshot of `state`: the generation, the date that says which
    future posts have come, and the views, read together from the index in one
    query (index.Views): every later read through those views checks that the
    index is still at that generation, so what a snapshot serves is one version."""
    views = state.index.views()
    generation, due = views.version
    return Snapshot(state.config_digest, state.index_id, generation, due, state.config,
                    views, state.content_digest)


def config_digest(config: Config) -> str:
    """Every field of the config: two configs that differ in anything (posts_dir
    included) are two versions."""
    return _digest(stable_repr(config))


def content_digest(config: Config) -> str:
    """What in the config shapes a document's bytes given its posts: not where the
    files are, so that instances with the same site mounted at other paths share
    documents in a shared store (the posts themselves are in the store key too)."""
    here = Path(".")
    return _digest(stable_repr(replace(config, path=here, posts_dir=here, state_dir=here)))


def stable_repr(value: object) -> str:
    """repr() with sets in sorted order: a set's repr follows string hashing,
    which differs in every process (PYTHONHASHSEED), and these digests must be
    the same across processes — the incremental export compares them with the
    previous build's, instances sharing a Redis store compare each other's."""
    if is_dataclass(value) and not isinstance(value, type):
        inner = ", ".join(f"{f.name}={stable_repr(getattr(value, f.name))}"
                          for f in fields(value) if f.repr)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(stable_repr(v) for v in value)) + "}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{stable_repr(k)}: {stable_repr(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(stable_repr(v) for v in value) + ")"
    return repr(value)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
