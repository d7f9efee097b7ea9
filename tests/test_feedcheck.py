"""Every feed of the fixture site and of the shipped sample through feedcheck
(../shared/feedcheck: a validator and six reader libraries that share no code
with feedsvc), with the true instants written by hand for --expect.

feedcheck must be installed (`../shared/feedcheck/setup.sh`; .ci/run does it).
When it is not, this test FAILS; set FEEDSVC_NO_FEEDCHECK=1 to skip it on
purpose on a machine without node and ruby.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from lxml import etree
from support import FIXTURES, REPO, make_site

FEEDCHECK = Path(os.environ.get("FEEDCHECK", REPO.parent / "shared" / "feedcheck" / "feedcheck"))
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def feedcheck() -> Path:
    if os.environ.get("FEEDSVC_NO_FEEDCHECK") == "1":
        pytest.skip("FEEDSVC_NO_FEEDCHECK=1: feedcheck deliberately not run")
    if not FEEDCHECK.is_file():
        pytest.fail(f"feedcheck not found at {FEEDCHECK}: the repo expects ../shared/feedcheck "
                    "next to it (or FEEDCHECK=path); FEEDSVC_NO_FEEDCHECK=1 skips this test")
    probe = subprocess.run([str(FEEDCHECK), "--help"], capture_output=True, text=True, timeout=60)
    if "not installed" in probe.stderr:
        pytest.fail(f"feedcheck is not installed: run {FEEDCHECK.parent / 'setup.sh'} "
                    f"(.ci/run does); FEEDSVC_NO_FEEDCHECK=1 skips this test\n{probe.stderr}")
    return FEEDCHECK


def entry_ids(path: Path) -> list[str]:
    if path.suffix == ".json":
        return [item["id"] for item in json.loads(path.read_bytes())["items"]]
    root = etree.fromstring(path.read_bytes())
    if path.suffix == ".rss":
        return [str(g.text) for g in root.iter("guid")]
    return [str(e.findtext(f"{ATOM}id")) for e in root.iter(f"{ATOM}entry")]


def groups(out: Path, truth: list[dict[str, str]]) -> dict[tuple[str, ...], list[Path]]:
    """Feed files grouped by the --expect entries that apply to them."""
    known = {e["id"] for e in truth}
    grouped: dict[tuple[str, ...], list[Path]] = defaultdict(list)
    for path in sorted([*out.glob("feeds/**/*.*"), *out.glob("tags/**/*.*")]):
        ids = entry_ids(path)
        assert set(ids) <= known, f"{path}: entries without a hand-written instant: {ids}"
        # In Atom, feed-extractor reports <updated> as an entry's only date and
        # rss-parser <published>: no one expectation fits both when they differ.
        # Those entries are still checked by feedcheck's consistency check here,
        # and their instants by the tables of test_dates.py and test_posts.py.
        atom = path.suffix == ".atom"
        wanted = tuple(json.dumps({"id": e["id"], "date": e["date"]}, sort_keys=True)
                       for e in truth if e["id"] in ids and not (atom and "updated" in e))
        grouped[(*wanted, "empty-atom" if path.suffix == ".atom" and not ids else "")].append(path)
    return grouped


def run_feedcheck(feedcheck: Path, config: Path, expect: Path, tmp_path: Path) -> str:
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(config), "--out",
                    str(out)], check=True, capture_output=True, timeout=120)
    truth = json.loads(expect.read_text(encoding="utf-8"))["entries"]
    report = []
    for n, (key, files) in enumerate(groups(out, truth).items()):
        args = [str(feedcheck)]
        wanted = [json.loads(e) for e in key if e.startswith("{")]
        if wanted:
            path = tmp_path / f"expect-{n}.json"
            path.write_text(json.dumps({"entries": wanted}), encoding="utf-8")
            args += ["--expect", str(path)]
        if "empty-atom" in key:
            # feed-extractor refuses an Atom feed without entries (feedcheck README).
            args += ["--skip", "@extractus/feed-extractor"]
        proc = subprocess.run([*args, *map(str, files)], capture_output=True, text=True,
                              timeout=600)
        report.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, "\n".join(report)
        assert f"{len(files)} file(s), {len(files)} passed, 0 failed" in proc.stdout
    return "\n".join(report)


# Six readers per file, ~60 files: minutes on a loaded machine, not the default 120 s.
@pytest.mark.timeout(900)
def test_fixture_site_passes_feedcheck(feedcheck: Path, tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", fixture="site")
    report = run_feedcheck(feedcheck, config, FIXTURES / "site-expect.json", tmp_path)
    assert "RESULT: FAIL" not in report
    # The archives (RFC 5005 §4) of categories, tags and the site-wide feed went
    # through it too, in every format.
    archives = sorted((tmp_path / "out").glob("**/archive/*.*"))
    kinds = {(p.relative_to(tmp_path / "out").parts[0], p.parent.parent.name, p.suffix)
             for p in archives}
    assert {("feeds", "all", ".atom"), ("feeds", "kunmingribao", ".rss"),
            ("feeds", "kunmingribao", ".json"), ("tags", "昆明", ".atom")} <= kinds
    for path in archives:
        assert str(path) in report, f"{path} was not checked"


@pytest.mark.timeout(900)
def test_shipped_sample_passes_feedcheck(feedcheck: Path, tmp_path: Path) -> None:
    report = run_feedcheck(feedcheck, REPO / "config.yaml", FIXTURES / "sample-expect.json",
                           tmp_path)
    assert "RESULT: FAIL" not in report
