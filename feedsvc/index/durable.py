"""The part of the index that cannot be derived from posts_dir: a database of
its own beside the posts' tables, so that a rebuild of those (an
INDEX_FORMAT bump, a change of the post reading rules, a corrupt file set
aside) never touches it.

- SQLite: `state_dir/state.sqlite3` (the posts' file is named per set of
  reading rules, `index-<digest>.sqlite3`, and replaced when they change);
- PostgreSQL: the schema `feedsvc_state` of the configured database (the
  posts' schema is `feedsvc_<digest>`), shared by every instance of the
  cluster.

Each concept that keeps something here has a module of its own with its
DDL (state_tables.py: upstream, WebSub and near-duplicate state, queried in
sources.py; subscriber_tables.py: subscriber counts, queried in
subscriber_store.py), hooked into `schema()` below with one line.
"""

from __future__ import annotations

from pathlib import Path

from feedsvc.config import Config
from feedsvc.index.db import Database, SqliteDatabase

FILE = "state.sqlite3"
NAMESPACE = "state"


def schema(blob: str, text: str = "TEXT") -> list[str]:
    from feedsvc.index import state_tables, subscriber_tables

    return [*state_tables.schema(blob, text), *subscriber_tables.schema(blob, text)]


def location(config: Config) -> str:
    """Where the durable tables are, as a key (one store per place per process)."""
    if config.index.type == "postgres" and config.index.url:
        return f"postgres:{config.index.url}"
    return f"sqlite:{(config.state_dir / FILE).absolute()}"


def folder(config: Config) -> Path | None:
    """The folder the SQLite file is in (None on PostgreSQL): where a write failure's cause is."""
    return None if location(config).startswith("postgres:") else config.state_dir


def open_durable(config: Config) -> Database:
    """The durable database (IndexUnavailable when it cannot be opened now)."""
    if config.index.type == "postgres" and config.index.url:
        from feedsvc.index.pg import PostgresDatabase

        return PostgresDatabase(config.index.url, namespace=NAMESPACE, tables=schema)
    return SqliteDatabase(config.state_dir / FILE, tables=schema)
