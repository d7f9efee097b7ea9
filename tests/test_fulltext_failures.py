"""Full text, issue 13's bad input: an extractor that raises costs one item its
article (the item is stored with the feed's own content), is reported by
`feedsvc collect` and in /status, and every other page still gets its article.

The extractor runs in a spawned child process (upstream/fulltext.py). To make
the real trafilatura raise on one page, the child starts with a
`sitecustomize` of the test's own on PYTHONPATH that wraps
`trafilatura.extract` to raise on a page carrying a marker — the only double
here; the child, the pool, the pickled error and the collector are the real
ones."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import running
from test_fulltext import bodies, collect, fulltext_site
from test_fulltext import up as up  # noqa: F401 - the fixture
from test_upstream import site_with
from upstream_support import Route, Upstream

from feedsvc.upstream.collector import load_state

MARKER = b"EXTRACTOR-RAISES-HERE"
SITECUSTOMIZE = f'''
import trafilatura

_extract = trafilatura.extract


def extract(filecontent, *args, **kwargs):
    if {MARKER.decode()!r} in str(filecontent):
        raise RuntimeError("lxml tree broke on this page")
    return _extract(filecontent, *args, **kwargs)


trafilatura.extract = extract
'''
TOKEN = "admin-token-of-the-extractor-tests"


@pytest.fixture
def raising_extractor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      up: Upstream) -> Iterator[Upstream]:  # noqa: F811
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    # Children (the extractor's, `feedsvc collect`) start with it; this process did not.
    monkeypatch.setenv("PYTHONPATH", str(hook))
    page = up.routes["/articles/metro.html"]
    up.routes["/articles/metro.html"] = Route(page.body.replace(b"</body>", b"<!-- " + MARKER
                                                                + b" --></body>"), "text/html")
    yield up


def test_an_extractor_that_raises_costs_one_item_its_article(
        tmp_path: Path, raising_extractor: Upstream) -> None:
    up = raising_extractor
    config = fulltext_site(tmp_path, up)
    result = collect(config)
    assert (result.new, result.error) == (4, None)
    # The lake page still got its article; the metro item kept the feed's content.
    assert result.fulltext == 1
    body = bodies(config)
    assert "下一步，昆明将继续完善绿道周边的生态修复工作" in body["滇池绿道全线贯通"]
    assert "五号线开始试运行。" in body["昆明地铁五号线试运行"]
    assert "全线共设车站22座" not in body["昆明地铁五号线试运行"]
    [failure] = [e for e in result.fulltext_errors if "metro.html" in e]
    assert "the extractor failed: RuntimeError: lxml tree broke on this page" in failure
    state = load_state(config, "kunmingribao", up.url + "/summary.xml")
    assert failure in state.public()["last_fulltext_errors"]


def test_collect_and_status_report_the_extractor_s_failure(
        tmp_path: Path, raising_extractor: Upstream) -> None:
    up = raising_extractor
    config = site_with(tmp_path, {"kunmingribao": [
        {"url": up.url + "/summary.xml", "fulltext": True}]}, admin_token=TOKEN)
    run = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                          str(config.path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr        # the source answered
    assert "4 new, 0 unchanged, full text for 1, full text failed for 3" in run.stdout, run.stdout
    # The first failure (in feed order) is the extractor's: the line names it.
    assert "(kept the feed's content: " + up.url + "/articles/metro.html: the extractor " \
        "failed: RuntimeError: lxml tree broke on this page …)" in run.stdout, run.stdout
    with running(config.path) as server:
        [source] = server.get("/status", headers={"Authorization": f"Bearer {TOKEN}"}
                              ).json()["sources"]
    assert any("metro.html: the extractor failed: RuntimeError: lxml tree broke on this page"
               in e for e in source["last_fulltext_errors"]), source
