"""Command line: argument parsing and exit codes only; the work is elsewhere.

Exit codes: 0 all well, 1 some post or source has a problem, 2 bad config.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

from feedsvc import __version__
from feedsvc.config import Config, load_config
from feedsvc.errors import ConfigError

DESCRIPTION = "Feeds (RSS, Atom, JSON Feed) per category from a folder of Jekyll-style posts."
EPILOG = """\
exit codes:
  0  all well
  1  some post (check) or upstream source (collect) has a problem
  2  the config is invalid (every command checks it first), or a wrong command line

Run `feedsvc COMMAND --help` for a command's options. The config file and
every key in it are described in README.md."""
COMMANDS = {
    "serve": ("serve the feeds, the index page and OPML over HTTP (gunicorn, asyncio workers)",
              "Serves until stopped (Ctrl-C or SIGTERM). Post and config.yaml changes "
              "are picked up without a restart. Exit 2 on a bad config."),
    "build": ("write every feed, index.html and opml.xml as static files",
              "Writes the files at the paths of their URLs (OUT/feeds/<slug>.atom, "
              "OUT/index.html, OUT/opml.xml), byte-identical to what serve answers. "
              "Exit 2 on a bad config."),
    "check": ("validate the config and every post, printing each problem",
              "Prints one line per problem (file: reason), one per warning (a post in "
              "no category feed), and true counts. Exit 0 when all is clean (warnings "
              "allowed), 1 when some post has a problem, 2 on a bad config."),
    "stats": ("print subscriber counts per feed, for the latest day of each",
              "Per feed: each aggregator's reported subscribers, the distinct direct "
              "readers and the total (README, Subscriber counts). Exit 2 on a bad config."),
    "collect": ("fetch the upstream sources once and store new items as posts",
                "One pass over the categories' `sources:`, whether due or not. Exit 0 "
                "when every source answered, 1 when some failed, 2 on a bad config."),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feedsvc", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"feedsvc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str) -> argparse.ArgumentParser:
        summary, details = COMMANDS[name]
        s = sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.",
                           epilog=details)
        s.add_argument("--config", default="config.yaml", metavar="PATH",
                       help="config.yaml, a Jekyll site's _config.yml, or the site's folder; "
                            "paths in it are relative to its folder (default: %(default)s)")
        return s

    s = with_config("serve")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for every interface (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    s.add_argument("--workers", type=int, default=2, metavar="N",
                   help="worker processes (default: %(default)s)")
    s.add_argument("--threads", type=int, default=8, metavar="N",
                   help="threads per worker process for the requests that are not "
                        "replayed from the event loop (default: %(default)s)")
    s.add_argument("--access-log", action="store_true",
                   help="log every request to standard output (default: off)")
    s = with_config("build")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write into, created when missing (required)")
    s.add_argument("--watch", action="store_true",
                   help="keep the folder current: build again after every change of a post "
                        "or of config.yaml, until Ctrl-C (default: build once)")
    with_config("check")
    s = with_config("stats")
    s.add_argument("--days", type=int, default=30, metavar="N",
                   help="look back this many days (default: %(default)s)")
    s = with_config("collect")
    s.add_argument("--category", metavar="SLUG",
                   help="collect only this category's sources (default: every category)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"feedsvc: invalid config: {e}", file=sys.stderr)
        return 2
    command = {"serve": _serve, "build": _build, "check": _check, "collect": _collect,
               "stats": _stats}
    return command[args.command](config, args)


def _serve(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.server import serve

    serve(str(config.path), args.host, args.port, args.workers, args.threads, args.access_log)
    return 0


def _build(config: Config, args: argparse.Namespace) -> int:
    from feedsvc import export

    if args.watch:
        with contextlib.suppress(KeyboardInterrupt):
            export.watch(config, args.out, report=lambda r: print(r.line(args.out), flush=True))
        return 0
    print(export.exporter(config, args.out).build().line(args.out))
    return 0


def _check(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.check import run_check

    return run_check(config)


def _stats(config: Config, args: argparse.Namespace) -> int:
    import datetime as dt

    from feedsvc import subscriber_report
    from feedsvc.index.db import IndexUnavailable
    from feedsvc.subscriber_store import SubscriberStore
    from feedsvc.subscribers import Recorder

    store = SubscriberStore(config)
    today = Recorder(store, (), config.site.timezone).today()
    since = (today - dt.timedelta(days=max(args.days, 1) - 1)).isoformat()
    try:
        counts = store.days(since)
    except IndexUnavailable as e:
        print(f"feedsvc: cannot read the subscriber counts: {e}", file=sys.stderr)
        return 1
    print(subscriber_report.table(counts))
    return 0


def _collect(config: Config, args: argparse.Namespace) -> int:
    from feedsvc.upstream.collector import run_collect

    return run_collect(config, args.category)
