#!/usr/bin/env python3
"""Figures for docs/RELIABILITY.md (issue 15): `feedsvc serve` (2 workers)
with a full, then a read-only state_dir (a real 256 KiB tmpfs; needs root),
and with posts_dir removed and restored, then rename-swapped.

    sudo .venv/bin/python bench/faults.py [--seconds 10]

Prints, for each fault: upstream fetches and error lines logged while it
lasts, and the seconds from its end (or from the restore/swap) until the
feeds are right again on every worker.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import feedparser  # noqa: E402
from disk_support import fill, remount, small_tmpfs  # noqa: E402
from support import make_site, post, running  # noqa: E402
from upstream_support import Route, upstream  # noqa: E402

TITLES = {"安宁打造招商引资强磁场", "Dianchi Lake clean-up & more", "春城花开"}


def titles(server: object) -> set[str]:
    resp = server.get("/feeds/kunmingribao.atom")  # type: ignore[attr-defined]
    return {e.title for e in feedparser.parse(resp.content).entries}


def until(check: object, timeout: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(check() for _ in range(6)):  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    return float("inf")


def state_fault(kind: str, seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp, upstream() as up, \
            small_tmpfs(Path(tmp) / "state", "256k") as state:
        rss = Route.fixture("rss.xml")
        rss.etag, rss.last_modified = False, None
        up.routes["/rss.xml"] = rss
        cats = {"kunmingribao": {"title": "昆明日报新闻",
                                 "sources": [{"url": up.url + "/rss.xml", "every": "1s"}]}}
        cfg = make_site(Path(tmp) / "site", config={"categories": cats, "state_dir": str(state)})
        filler = fill(state) if kind == "full" else None
        if kind == "read-only":
            remount(state, read_only=True)
        with running(cfg, workers=2) as server:
            time.sleep(seconds)
            fetches = len(up.seen("/rss.xml"))
            errors = sum(1 for line in server.output().splitlines() if " ERROR " in line)
            if filler:
                filler.unlink()
            else:
                remount(state, read_only=False)
            back = until(lambda: titles(server) == TITLES)
    return (f"state_dir {kind:9}: {fetches} upstream fetches and {errors} ERROR lines in "
            f"{seconds:g} s; feeds complete {back:.1f} s after the fault ended")


def posts_fault(seconds: float) -> list[str]:
    posts = {f"2022-03-{d:02d}-p{d}.md": post(f"第{d}条", f"2022-03-{d:02d} 06:00:00 +0800")
             for d in range(10, 22)}
    everything = {f"第{d}条" for d in range(10, 22)}
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_site(Path(tmp) / "site", posts)
        folder = cfg.parent / "_posts"
        with running(cfg, workers=2) as server:
            until(lambda: titles(server) == everything)
            shutil.copytree(folder, Path(tmp) / "backup")
            shutil.rmtree(folder)
            until(lambda: titles(server) == set())
            time.sleep(seconds / 2)
            shutil.copytree(Path(tmp) / "backup", folder)
            out.append(f"posts_dir removed, restored: every worker complete after "
                       f"{until(lambda: titles(server) == everything):.2f} s")
            release = Path(tmp) / "site" / "_posts.new"
            shutil.copytree(folder, release)
            (release / "2022-03-22-x.md").write_text(post("新版", "2022-03-22 06:00:00 +0800"),
                                                     encoding="utf-8")
            folder.rename(Path(tmp) / "site" / "_posts.old")
            release.rename(folder)
            out.append(f"posts_dir rename-swapped: the new post on every worker after "
                       f"{until(lambda: '新版' in titles(server)):.2f} s")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="how long each fault lasts")
    args = p.parse_args()
    for kind in ("full", "read-only"):
        print(state_fault(kind, args.seconds), flush=True)
    for line in posts_fault(args.seconds):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
