"""Command line: argument parsing and exit codes only; the work is elsewhere.

Exit codes: 0 all well, 1 some post or source has a problem, 2 bad config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from feedsvc import __version__
from feedsvc.config import Config, load_config
from feedsvc.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feedsvc", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"feedsvc {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument("--config", default="config.yaml", help="path of config.yaml")
        return s

    s = with_config("serve", "serve the feeds over HTTP (gunicorn, asyncio workers)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    s.add_argument("--threads", type=int, default=8,
                   help="threads per worker for requests that are not replayed (default 8)")
    s.add_argument("--access-log", action="store_true", help="log every request")
    s = with_config("build", "write every feed, the index page and OPML as static files")
    s.add_argument("--out", required=True, help="output folder")
    with_config("check", "validate the config and every post")
    s = with_config("collect", "fetch the upstream sources once and store new items as posts")
    s.add_argument("--category", help="only this category's sources")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"feedsvc: invalid config: {e}", file=sys.stderr)
        return 2
    command = {"serve": _serve, "build": _build, "check": _check, "collect": _collect}
    return command[args.command](config, args)


def _serve(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.server import serve

    serve(str(config.path), args.host, args.port, args.workers, args.threads, args.access_log)
    return 0


def _build(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.export import export

    written = export(config, args.out)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def _check(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.index import Index

    logging.getLogger("feedsvc").setLevel(logging.ERROR)
    index = Index(config)
    index.scan()
    problems = index.problem_list()
    for rel, reason in problems:
        print(f"{config.posts_dir / rel}: {reason}")
    views = index.views()
    verdict = "problems found" if problems else "ok"
    print(f"{config.path}: {verdict}; {len(index.posts)} posts, {len(views.all)} in feeds, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _collect(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.upstream.collector import run_collect

    return run_collect(config, args.category)
