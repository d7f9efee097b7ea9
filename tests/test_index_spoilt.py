"""A spoilt SQLite index under `feedsvc serve` (issue 12, "Bad input"): a file
overwritten or cut short while it serves, found spoilt at start, and an index
left by an older INDEX_FORMAT beside it. Against a real server on loopback:
what it answers (status and bytes), what /status and /readyz say, and that
it is rebuilt by itself, never a 500."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import feedparser
import pytest
from support import Server, make_site, post, running, wait_for

from feedsvc.config import Config, load_config
from feedsvc.index import INDEX_FORMAT, Index, index_identity
from feedsvc.index.db import SqliteDatabase

POSTS = {f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800")
         for d in range(1, 6)}
FEED = "/feeds/kunmingribao.atom"


def titles(body: bytes) -> list[str]:
    return [e.title for e in feedparser.parse(body).entries]


def spoil(db: Path, how: str) -> None:
    """`overwritten`: garbage over the start of the file and its WAL, in place;
    `truncated`: cut short, as a copy that stopped. The pages the server's
    connections hold hide both from its reads until it writes. `replaced`:
    another file of garbage renamed over it (a restore gone wrong), which
    every read opens anew (db.SqliteDatabase follows the file's inode)."""
    if how == "replaced":
        tmp = db.with_name(db.name + ".restoring")
        tmp.write_bytes(b"garbage!" * 4096)
        os.replace(tmp, db)
        return
    with open(db, "r+b") as fh:
        if how == "truncated":
            fh.truncate(db.stat().st_size // 3)
        else:
            fh.write(b"garbage!" * 4096)
    wal = Path(str(db) + "-wal")
    if wal.exists():
        with open(wal, "r+b") as fh:
            fh.write(b"garbage!" * 4096)


def index_file(config: Config) -> Path:
    [db] = config.state_dir.glob("index-*.sqlite3")
    return db


def set_aside(db: Path) -> Path:
    return db.with_name(db.name + ".corrupt")


def indexed(config: Config) -> Path:
    """The site indexed by this process, as a server that ran before left it."""
    index = Index(config)
    index.scan()
    index.close()
    return index_file(config)


class AnotherLeader:
    """This process holds state_dir/leader.lock (leader.py): a server started
    meanwhile serves but never writes the index, as a worker that does not
    lead, until `release()`."""

    def __init__(self, config: Config) -> None:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(config.state_dir / "leader.lock", os.O_RDWR | os.O_CREAT,
                                      0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)           # the lock goes with the descriptor
            self.fd = None


def status_index(server: Server) -> dict[str, object]:
    resp = server.get("/status")
    assert resp.status_code == 200, resp.text
    info: dict[str, object] = resp.json()["index"]
    return info


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_an_index_file_spoilt_while_serving_is_rebuilt_at_the_next_change(
        tmp_path: Path, how: str) -> None:
    """The pages a server's connections hold hide the damage from its reads;
    the next change writes, finds it, and the posts are indexed again: what
    it last had is served meanwhile (or 503), then the change."""
    site = make_site(tmp_path / "site", POSTS)
    config = load_config(site)
    with running(site) as server:
        before = server.get(FEED)
        assert before.status_code == 200
        db = index_file(config)
        spoil(db, how)
        (site.parent / "_posts" / "2022-03-09-after.md").write_text(
            post("After the damage", "2022-03-09 10:00:00 +0800"), encoding="utf-8")
        seen: set[int] = set()

        def recovered() -> bool:
            resp = server.get(FEED)
            seen.add(resp.status_code)
            if resp.status_code != 200 or "After the damage" not in titles(resp.content):
                assert resp.status_code == 503 or resp.content == before.content
                return False
            return server.get("/readyz").status_code == 200

        wait_for(recovered, timeout=30)
        assert seen <= {200, 503}
        assert set_aside(db).exists()
        assert titles(server.get(FEED).content) == ["After the damage", "P5", "P4", "P3", "P2",
                                                    "P1"]
        info = status_index(server)
        assert info["ready"] is True and info["last_error"] is None
        log = server.output()
    assert "indexing every post again" in log, log


def test_an_index_file_replaced_while_serving_is_rebuilt_by_itself(tmp_path: Path) -> None:
    """Damage that the next read sees: rebuilt at once, with no change to wait for."""
    site = make_site(tmp_path / "site", POSTS)
    config = load_config(site)
    with running(site) as server:
        before = server.get(FEED)
        db = index_file(config)
        spoil(db, "replaced")
        seen: set[int] = set()

        def recovered() -> bool:
            resp = server.get(FEED)
            seen.add(resp.status_code)
            if resp.status_code == 200:
                # What it last had, or (once rebuilt) the same posts again: one set of bytes.
                assert resp.content == before.content
            return server.get("/readyz").status_code == 200 and set_aside(db).exists()

        wait_for(recovered, timeout=30)
        assert seen <= {200, 503}
        after = server.get(FEED)
        assert after.content == before.content
        assert after.headers["ETag"] == before.headers["ETag"]
        assert status_index(server)["last_error"] is None
        log = server.output()
    assert "indexing every post again" in log, log


def test_a_spoilt_index_names_its_cause_until_the_leader_rebuilds_it(tmp_path: Path) -> None:
    """While no process of the server leads (this test holds the leader lock),
    nobody rebuilds: what the server made already is served, the rest is 503,
    and /status and /readyz name the cause. Once it may lead, it rebuilds."""
    site = make_site(tmp_path / "site", POSTS)
    config = load_config(site)
    db = indexed(config)
    other = AnotherLeader(config)
    try:
        with running(site) as server:
            before = server.get(FEED)
            assert before.status_code == 200
            assert status_index(server)["ready"] is True
            spoil(db, "replaced")
            during = server.get(FEED)
            assert during.status_code == 200 and during.content == before.content
            assert during.headers["ETag"] == before.headers["ETag"]
            never_made = server.get("/feeds/all.json")
            assert never_made.status_code == 503 and never_made.headers["Retry-After"]
            ready = server.get("/readyz")
            assert ready.status_code == 503 and "not a database" in ready.text, ready.text
            info = status_index(server)
            assert info["ready"] is False and "not a database" in str(info["error"]), info
            assert server.get("/healthz").status_code == 200
            other.release()             # the server may lead now: it rebuilds
            wait_for(lambda: server.get("/readyz").status_code == 200, timeout=30)
            assert set_aside(db).exists()
            after = server.get(FEED)
            assert after.content == before.content
            assert after.headers["ETag"] == before.headers["ETag"]
            assert server.get("/feeds/all.json").status_code == 200
            assert status_index(server)["last_error"] is None
    finally:
        other.release()


def test_a_server_started_on_a_spoilt_index_indexes_again(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", POSTS)
    config = load_config(site)
    db = indexed(config)
    spoil(db, "truncated")
    with running(site) as server:       # waits for /readyz
        feed = server.get(FEED)
        assert feed.status_code == 200
        assert titles(feed.content) == ["P5", "P4", "P3", "P2", "P1"]
        info = status_index(server)
        assert info["ready"] is True and info["last_error"] is None
        log = server.output()
    assert set_aside(db).exists()
    assert "is unreadable" in log and "indexing again" in log, log


def older_format_file(config: Config) -> Path:
    """Where a feedsvc of the previous INDEX_FORMAT keeps this site's index."""
    identity = (INDEX_FORMAT - 1, *index_identity(config)[1:])
    digest = hashlib.sha256(repr(identity).encode()).hexdigest()[:16]
    return config.state_dir / f"index-{digest}.sqlite3"


def test_an_index_of_an_older_format_is_left_alone_and_the_posts_read_again(
        tmp_path: Path) -> None:
    """The older index holds other titles than the posts now have: what is
    served comes from the posts, never from it; it is read only for its
    archive numbers, and its bytes stay as they were."""
    site = make_site(tmp_path / "site", {
        rel: text.replace("title: P", "title: Old P") for rel, text in POSTS.items()})
    config = load_config(site)
    old = older_format_file(config)
    index = Index(config, db=SqliteDatabase(old))
    index.scan()
    index.close()
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    for rel, text in POSTS.items():
        (site.parent / "_posts" / rel).write_text(text, encoding="utf-8")
    with running(site) as server:
        feed = server.get(FEED)
        assert feed.status_code == 200
        assert titles(feed.content) == ["P5", "P4", "P3", "P2", "P1"]
        assert status_index(server)["file"] != old.name
        log = server.output()
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before
    assert f"archive numbers taken from the previous index {old.name}" in log, log
    assert len(list(config.state_dir.glob("index-*.sqlite3"))) == 2   # the old one and ours
