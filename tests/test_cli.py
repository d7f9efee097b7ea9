"""`feedsvc check` and `feedsvc build` as a user runs them (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from flask.testing import FlaskClient
from support import make_site, post

FIXTURE_PROBLEMS = {
    "2022-03-25-bad-date.md": "cannot parse date 'next tuesday-ish'",
    "2022-03-26-malformed-yaml.md": "front matter: invalid YAML",
    "2022-03-27-no-front-matter.md": "no front matter",
    "2022-03-28-gbk-bytes.md": "not valid UTF-8",
}


def feedsvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedsvc", *args], capture_output=True,
                          text=True, timeout=120)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_prints_every_problem_with_file_and_reason(site: Path) -> None:
    proc = feedsvc("check", "--config", str(site))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    for name, reason in FIXTURE_PROBLEMS.items():
        path = site.parent / "_posts" / name
        assert any(line.startswith(f"{path}: ") and reason in line for line in lines), name
    assert len([line for line in lines
                if "/_posts/" in line and ": warning: " not in line]) == len(FIXTURE_PROBLEMS)
    assert "4 problem(s)" in lines[-1]


def test_check_reports_duplicate_ids(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", {
        "2022-03-21-a.md": post("A", "2022-03-21 10:00:00 +0800", permalink="/same.html"),
        "2022-03-22-b.md": post("B", "2022-03-22 10:00:00 +0800", permalink="/same.html"),
    })
    proc = feedsvc("check", "--config", str(config))
    assert proc.returncode == 1
    assert "2022-03-22-b.md: same id as 2022-03-21-a.md" in proc.stdout


def test_check_exits_0_when_clean(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", {
        "2022-03-21-fine.md": post("Fine", "2022-03-21 10:00:00 +0800"),
        "2022-03-21-elsewhere.md": post("Unconfigured", "2022-03-21 10:00:00 +0800", "sports"),
    })
    proc = feedsvc("check", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 post files, 2 in feeds" in proc.stdout and "0 problem(s)" in proc.stdout
    # Unconfigured categories are a warning, not a problem: the exit code stays 0.
    assert "2022-03-21-elsewhere.md: warning: category 'sports' has no feed" in proc.stdout
    assert "1 warning(s)" in proc.stdout


def test_check_warns_of_a_near_miss_and_of_no_category(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", {
        "2022-03-21-typo.md": post("Typo", "2022-03-21 10:00:00 +0800", "kunmingribo"),
        "2022-03-21-none.md": post("None", "2022-03-21 10:00:00 +0800", "[]"),
        "2099-03-21-later.md": post("Later", "2099-03-21 10:00:00 +0800"),
    })
    proc = feedsvc("check", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "2022-03-21-typo.md: warning: category 'kunmingribo' has no feed " \
           "(did you mean 'kunmingribao'?)" in out
    assert "2022-03-21-none.md: warning: no category: only in the site-wide feed" in out
    assert "3 post files, 2 in feeds, 1 future, 0 unpublished, 0 problem(s), 2 warning(s)" in out


def test_check_reports_two_posts_at_one_url(tmp_path: Path) -> None:
    # Two slugs that Jekyll's :title makes alike: one page for two posts.
    config = make_site(tmp_path / "site", {
        "2022-03-21-a-b.md": post("One", "2022-03-21 10:00:00 +0800", slug="a b"),
        "2022-03-21-other.md": post("Two", "2022-03-21 10:00:00 +0800", slug="a-b"),
    }, config={"jekyll_feed": True})
    proc = feedsvc("check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2022-03-21-other.md: same URL as 2022-03-21-a-b.md" in proc.stdout


def test_check_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    config = make_site(tmp_path / "site", config={"limt": 5})
    proc = feedsvc("check", "--config", str(config))
    assert proc.returncode == 2
    assert "limt: unknown key (did you mean 'limit'?)" in proc.stderr


def test_two_builds_give_byte_identical_trees(site: Path, tmp_path: Path) -> None:
    for out in ("one", "two"):
        proc = feedsvc("build", "--config", str(site), "--out", str(tmp_path / out))
        assert proc.returncode == 0, proc.stderr
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert "feeds/kunmingribao.rss" in one and "feeds/world.json" in one
    assert one == two


def test_built_files_equal_what_the_server_returns(site: Path, tmp_path: Path,
                                                   client: FlaskClient) -> None:
    proc = feedsvc("build", "--config", str(site), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    built = tree(tmp_path / "out")
    assert len(built) >= 12
    for rel, body in built.items():
        # A static server answers "/" with index.html.
        response = client.get("/" if rel == "index.html" else "/" + quote(rel))
        assert response.status_code == 200, rel
        assert response.data == body, rel


def test_help_says_what_each_command_does_its_defaults_and_exit_codes() -> None:
    top = feedsvc("--help")
    assert top.returncode == 0
    assert "exit codes:" in top.stdout and "Command line:" not in top.stdout
    for command in ("serve", "build", "check", "collect"):
        assert command in top.stdout
        text = " ".join(feedsvc(command, "--help").stdout.split())
        assert "(default: config.yaml)" in text, command
        assert "Exit 2 on a bad config" in text or "2 on a bad config" in text, command
    serve = " ".join(feedsvc("serve", "--help").stdout.split())
    for default in ("(default: 127.0.0.1)", "(default: 8000)", "(default: 2)", "(default: 8)"):
        assert default in serve
    # Every option says what it is for.
    import argparse

    from feedsvc.cli import _parser
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, (name, action.option_strings)
