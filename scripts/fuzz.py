#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the stages that read input
feedsvc does not control: the post reader, the date normaliser, the config
loader and the upstream parsers. Not part of `make test`; see docs/SECURITY.md.

    make fuzz                                        # every target, 5 minutes each
    .venv/bin/python scripts/fuzz.py post_reader --time 60
    .venv/bin/python scripts/fuzz.py --list

Seeds come from the repository's own fixtures (hostile posts, upstream feeds,
configs, the date table). Each target runs in a process of its own; a failing
input is written to fuzz/artifacts/<target>/ (git-ignored), to be minimised,
fixed at its cause and kept as a regression case in
tests/fixtures/fuzz/<target>/<case-name> (replayed by
tests/test_fuzz_regressions.py).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"
NAMES = ("post_reader", "date_normaliser", "config_loader", "upstream_parsers")
DATE_SEEDS = [
    "2022-03-21 06:00:08 +0800", "2022-03-21T06:00:08-05:00", "Mon, 21 Mar 2022 06:00:08 GMT",
    "2022-03-21", "March 21, 2022 6:00 AM", "Fri, 31 Dec 9999 23:59:59 +0000",
    "Mon, 01 Jan 0001 00:00:00 +0000", "9999-12-31T23:59:59-12:00", "1 Jan 0050 10:00 +0000",
    "2022-03-13 02:30:00", "10:30", "GMT+8", "2022-02-30",
]


def seeds(target: str, into: Path) -> None:
    """Copy the fixtures that fit `target` into a fresh corpus folder."""
    into.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if target == "post_reader":
        files = [p for p in (FIXTURES / "hostile" / "_posts").iterdir() if not p.name.endswith(".json")]
        files += sorted((FIXTURES / "site").rglob("*.md"))
    elif target == "upstream_parsers":
        files = sorted((FIXTURES / "upstream").iterdir())
    elif target == "config_loader":
        files = [REPO / "config.yaml", *sorted(FIXTURES.rglob("config.yaml"))]
    elif target == "date_normaliser":
        for i, text in enumerate(DATE_SEEDS):
            (into / f"date-{i}").write_text(text, encoding="utf-8")
    for f in [*files, *sorted((FIXTURES / "fuzz" / target).glob("*"))]:
        if f.is_file() and f.stat().st_size < 1_000_000:
            shutil.copy(f, into / f"{f.parent.name}-{f.name}")


def run_one(target: str, seconds: int, workdir: Path) -> int:
    """Fuzz `target` for `seconds` in this process (called in a child of main())."""
    import atheris

    sys.path.insert(0, str(TESTS))
    with atheris.instrument_imports(include=["feedsvc"]):
        import fuzz_targets
    check = fuzz_targets.TARGETS[target]
    corpus = workdir / "corpus"
    seeds(target, corpus)
    artifacts = REPO / "fuzz" / "artifacts" / target
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-rss_limit_mb=2048",
            "-timeout=10", f"-artifact_prefix={artifacts}/", "-max_len=200000",
            "-print_final_stats=1"]
    atheris.Setup(argv, check)
    atheris.Fuzz()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", nargs="*", help=f"which ({', '.join(NAMES)}); default all")
    p.add_argument("--time", type=int, default=300, help="seconds per target (default 300)")
    p.add_argument("--list", action="store_true", help="list the targets")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.list:
        print("\n".join(NAMES))
        return 0
    if args.child:
        with tempfile.TemporaryDirectory(prefix="feedsvc-fuzz-") as tmp:
            return run_one(args.child, args.time, Path(tmp))
    unknown = set(args.targets) - set(NAMES)
    if unknown:
        p.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    failed = []
    for target in args.targets or NAMES:
        print(f"== {target}: {args.time} s", flush=True)
        code = subprocess.call([sys.executable, __file__, "--child", target, "--time", str(args.time)])
        if code != 0:
            failed.append(target)
    print("fuzz: " + (f"FAILED {', '.join(failed)} (see fuzz/artifacts/)" if failed else "nothing found"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
