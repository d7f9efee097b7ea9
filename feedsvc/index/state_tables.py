"""The tables of upstream, WebSub and near-duplicate state (their queries:
sources.py), in the durable database (durable.py)."""

from __future__ import annotations


def schema(blob: str, text: str = "TEXT") -> list[str]:
    return [ddl.replace(" TEXT", " " + text) for ddl in [
        "CREATE TABLE IF NOT EXISTS upstream_sources (category TEXT NOT NULL, url TEXT NOT NULL,"
        " state TEXT NOT NULL, updated_us BIGINT NOT NULL, PRIMARY KEY (category, url))",
        "CREATE TABLE IF NOT EXISTS websub_announced (topic TEXT PRIMARY KEY,"
        " etag TEXT NOT NULL, updated_us BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS story_signatures (seq BIGINT PRIMARY KEY,"
        " guid TEXT NOT NULL, story TEXT NOT NULL, source TEXT NOT NULL, hashes TEXT NOT NULL)",
    ]]
