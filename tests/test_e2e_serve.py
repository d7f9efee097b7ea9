"""`feedsvc serve` as a real subprocess on a free loopback port, fetched over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import feedparser
import pytest
from support import Server, make_site

MEDIA_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    config = make_site(root / "site", fixture="site")
    out = root / "out"
    subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(config),
                    "--out", str(out)], check=True, capture_output=True, timeout=120)
    return config, out


@pytest.fixture(scope="module")
def served_site(built: tuple[Path, Path]) -> Path:
    return built[0]


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_serve_answers_the_three_formats_with_the_built_bytes(
        built: tuple[Path, Path], server: Server, fmt: str) -> None:
    response = server.get(f"/feeds/kunmingribao.{fmt}", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == MEDIA_TYPES[fmt]
    assert response.content == (built[1] / "feeds" / f"kunmingribao.{fmt}").read_bytes()
    if fmt != "json":
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo and len(parsed.entries) == 3


def test_serve_answers_an_empty_category_and_404s(built: tuple[Path, Path],
                                                  server: Server) -> None:
    empty = server.get("/feeds/empty.atom")
    assert empty.status_code == 200
    assert empty.content == (built[1] / "feeds" / "empty.atom").read_bytes()
    for path in ("/feeds/nosuch.rss", "/feeds/kunmingribao.xml"):
        missing = server.get(path)
        assert missing.status_code == 404 and missing.text.strip()


def test_serve_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    (tmp_path / "_posts").mkdir()
    bad = tmp_path / "config.yaml"
    bad.write_text("site: {title: T, url: https://e.com, timezone: Mars/Olympus}\n")
    proc = subprocess.run([sys.executable, "-m", "feedsvc", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "site.timezone" in proc.stderr
