from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from support import make_site

from feedsvc.app import create_app
from feedsvc.config import Config, load_config

# Nothing may depend on the host's zone: run everything far from UTC and +08:00.
os.environ.setdefault("TZ", "America/Los_Angeles")
time.tzset()   # without it this process keeps the zone it started with


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The fixture site (tests/fixtures/site) copied to a temporary folder."""
    return make_site(tmp_path / "site", fixture="site")


@pytest.fixture
def config(site: Path) -> Config:
    return load_config(site)


@pytest.fixture
def client(config: Config) -> Iterator[FlaskClient]:
    app = create_app(config, watch=False)
    with app.test_client() as c:
        yield c
