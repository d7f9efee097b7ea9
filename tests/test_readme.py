"""What the README shows a new user works on the shipped sample (config.yaml,
posts/): every http://127.0.0.1:8000/… link of the quick start and every
example URL of the URL table answers 200 with something in it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from feedsvc.app import create_app
from feedsvc.config import load_config

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
LINKS = sorted(set(re.findall(r"http://127\.0\.0\.1:8000(/[^\s<>)`]*)", README))
               | set(re.findall(r"`(/(?:feeds|tags)/[^`<>]+\.(?:rss|atom|json))`", README)))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    root = tmp_path_factory.mktemp("sample")
    shutil.copy(REPO / "config.yaml", root / "config.yaml")
    shutil.copytree(REPO / "posts", root / "posts")
    return create_app(load_config(root / "config.yaml"), watch=False).test_client()


def test_the_readme_shows_example_urls() -> None:
    assert "/tags/%E6%98%86%E6%98%8E.rss" in LINKS and "/feeds/kunmingribao.rss" in LINKS


@pytest.mark.parametrize("path", LINKS)
def test_every_example_url_of_the_readme_answers_on_the_sample(sample: FlaskClient,
                                                                path: str) -> None:
    resp = sample.get(path)
    assert resp.status_code == 200, (path, resp.get_data(as_text=True))
    if path.endswith(".rss"):
        assert b"<item>" in resp.data, path
