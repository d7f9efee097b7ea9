from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import support
from flask.testing import FlaskClient
from support import make_site

from feedsvc.app import create_app
from feedsvc.config import Config, load_config

# Nothing may depend on the host's zone: run everything far from UTC and +08:00.
os.environ.setdefault("TZ", "America/Los_Angeles")
time.tzset()   # without it this process keeps the zone it started with


# These modules run on both index backends (issue 12): SQLite and PostgreSQL.
BOTH_INDEXES = {"test_http_conditional", "test_reload", "test_redis_cache", "test_hostile",
                "test_one_version", "test_readiness"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    name = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "index_backend" in metafunc.fixturenames and name in BOTH_INDEXES:
        metafunc.parametrize("index_backend", ["sqlite", "postgres"], indirect=True,
                             scope="module")


@pytest.fixture(scope="module", autouse=True)
def index_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The index backend this module's sites use (support.use_index)."""
    kind: str = getattr(request, "param", "sqlite")
    support.INDEX_BACKEND[:] = [kind]
    yield kind
    support.INDEX_BACKEND[:] = ["sqlite"]


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    with contextlib.suppress(Exception):   # no PostgreSQL here: nothing was made either
        support.drop_pg_databases()


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
