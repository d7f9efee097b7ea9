"""Issue 15, finding 4: no credential and no absolute path in the public
/status; details behind `admin_token`; credentials never shown, not even to the
admin, nor in logs or `feedsvc collect` output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, make_site, running, wait_for
from upstream_support import Route, Upstream, upstream

from feedsvc import redact
from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.errors import ConfigError

TOKEN = "t0ken-for-the-tests-0123456789abcdef"
SECRETS = ("hunter2", "s3cret", "pa55word", "apikey123", "tok-999", "ftp-pass")


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/rss.xml?api_key=apikey123&page=1"] = Route.fixture("rss.xml")
        # An error message that quotes a URL with credentials in it.
        server.routes["/moved.xml?token=tok-999"] = Route(status=302, location="ftp://bob:ftp-pass@files.example/x")
        yield server


def site(tmp_path: Path, up: Upstream, **extra: object) -> Path:
    host = up.url.removeprefix("http://")
    sources = [f"http://alice:hunter2@{host}/rss.xml?api_key=apikey123&page=1",
               {"url": f"http://{host}/moved.xml?token=tok-999", "every": "1m"}]
    cats = {"kunmingribao": {"title": "昆明日报新闻", "sources": sources}}
    # Nothing listens on this port: the cache reports Redis unavailable, with its URL.
    cache = {"type": "redis", "url": f"redis://:pa55word@127.0.0.1:{free_port()}/13?password=s3cret"}
    return make_site(tmp_path / "site", config={"categories": cats, "cache": cache, **extra})


def leaks(text: str, tmp_path: Path) -> list[str]:
    found = [s for s in SECRETS if s in text]
    if str(tmp_path) in text or str(tmp_path.resolve()) in text:
        found.append("an absolute path")
    return found


def test_public_status_shows_no_credential_and_no_path(tmp_path: Path, up: Upstream) -> None:
    cfg = site(tmp_path, up, admin_token=TOKEN)
    with running(cfg) as server:
        # Both sources are tried (and one fails with a URL in its error) before we look.
        wait_for(lambda: len(up.seen("/moved.xml?token=tok-999")) >= 1
                 and len(up.seen()) >= 2, timeout=30)
        cfg.write_text(cfg.read_text(encoding="utf-8") + "limit: many\n", encoding="utf-8")
        wait_for(lambda: server.get("/status").json()["config_error"], timeout=20)
        public = server.get("/status")
        body = public.text
        assert public.status_code == 200 and public.headers["Cache-Control"] == "no-store"
        assert leaks(body, tmp_path) == []
        data = public.json()
        assert "sources" not in data and "config" not in data and "url" not in data["cache"]
        assert data["source_health"]["total"] == 2
        assert data["config_error"].startswith("config.yaml:")
        assert data["categories"]["kunmingribao"]["etags"]["rss"]
        log = server.output()
    assert "refused to follow" in log        # the failure is logged (to the admin) …
    assert [s for s in SECRETS if s in log] == []      # … without its credentials


def test_the_admin_token_shows_details_but_still_no_credential(tmp_path: Path,
                                                               up: Upstream) -> None:
    cfg = site(tmp_path, up, admin_token=TOKEN)
    with running(cfg) as server:
        wait_for(lambda: len(up.seen("/moved.xml?token=tok-999")) >= 1, timeout=30)
        admin = {"Authorization": f"Bearer {TOKEN}"}
        wait_for(lambda: all(s["last_attempt"] for s in
                             server.get("/status", headers=admin).json()["sources"]), timeout=30)
        resp = server.get("/status", headers=admin)
        data = resp.json()
        assert [s for s in SECRETS if s in resp.text] == []
        assert data["config"] == str(cfg) and data["posts_dir"].startswith(str(tmp_path))
        urls = [s["url"] for s in data["sources"]]
        assert urls[0].startswith("http://***@127.0.0.1:") and "api_key=***" in urls[0]
        assert "page=1" in urls[0] and urls[1].endswith("token=***")
        moved = data["sources"][1]
        assert "ftp://***@files.example/x" in moved["last_error"]
        assert data["cache"]["url"].startswith("redis://***@127.0.0.1:")
        assert data["cache"]["url"].endswith("/13?password=***")
        # A wrong token, or another scheme, is refused rather than shown the public view.
        for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer "):
            denied = server.get("/status", headers={"Authorization": header})
            assert denied.status_code == 401 and "WWW-Authenticate" in denied.headers


def test_without_a_configured_token_every_credential_is_refused(tmp_path: Path,
                                                                up: Upstream) -> None:
    app = create_app(load_config(site(tmp_path, up)), watch=False)
    with app.test_client() as client:
        assert "sources" not in client.get("/status").get_json()
        assert client.get("/status", headers={"Authorization": "Bearer anything-at-all-x"}
                          ).status_code == 401


def test_collect_output_shows_no_credential(tmp_path: Path, up: Upstream) -> None:
    cfg = site(tmp_path, up)
    out = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr      # the ftp redirect fails
    assert "refused to follow" in out.stdout
    assert [s for s in SECRETS if s in out.stdout + out.stderr] == []


@pytest.mark.parametrize("token", ["short", " padded-with-spaces-long ", 12345678901234567890])
def test_a_weak_admin_token_is_a_config_error(tmp_path: Path, token: object) -> None:
    cfg = make_site(tmp_path / "site", config={"admin_token": token})
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "admin_token" in str(e.value) and str(token) not in str(e.value)


def test_the_token_is_in_no_repr(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site", config={"admin_token": TOKEN}))
    assert config.admin_token == TOKEN and TOKEN not in repr(config)


# The credential forms, case by case (the fixture files of the fuzzer hold more).
@pytest.mark.parametrize(("raw", "shown"), [
    ("https://user:pw@h.example/a?b=1", "https://***@h.example/a?b=1"),
    ("https://TOKEN@h.example/", "https://***@h.example/"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
    ("rediss://default:pw@[::1]:6380/2", "rediss://***@[::1]:6380/2"),
    ("redis://127.0.0.1/0?password=pw&db=1", "redis://127.0.0.1/0?password=***&db=1"),
    ("https://h.example/f?Access-Token=pw&X-Amz-Signature=pw", "https://h.example/f?Access-Token=***&X-Amz-Signature=***"),
    ("https://h.example/feed?page=2", "https://h.example/feed?page=2"),
    ("https://u:pw@h.example:99999/", "https://***@h.example:99999/"),
])
def test_every_credential_form_is_redacted(raw: str, shown: str) -> None:
    assert redact.url(raw) == shown
    assert redact.text(f"failed: {raw!r} and more") == f"failed: {shown!r} and more"


def test_absolute_paths_are_cut_for_the_public() -> None:
    text = "/srv/site/config.yaml:3: limit: cannot write '/var/lib/x/sources/a.json' (see https://h/a/b)"
    assert redact.public_text(text) == \
        "config.yaml:3: limit: cannot write 'a.json' (see https://h/a/b)"


def test_status_varies_by_authorization(tmp_path: Path, up: Upstream) -> None:
    config = load_config(site(tmp_path, up, admin_token=TOKEN))
    app = create_app(config, watch=False)
    with app.test_client() as client:
        resp = client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.headers["Vary"] == "Authorization"
    assert json.loads(resp.data)["sources"][0]["url"].startswith("http://***@")
