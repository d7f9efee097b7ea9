from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import support
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from private_postgres import PrivatePostgres, private_postgres
from readers_site import readers_site
from support import FakeClock, Serve, Server, make_site, running

from feedsvc.app import create_app
from feedsvc.config import Config, load_config

# Nothing may depend on the host's zone: run everything far from UTC and +08:00.
os.environ.setdefault("TZ", "America/Los_Angeles")
time.tzset()   # without it this process keeps the zone it started with

# Hypothesis profiles (README, "Property tests"). Every profile draws new random
# examples each run (derandomize off) and has no per-example deadline (a shared,
# loaded machine). "dev" keeps failing examples in .hypothesis/ (git-ignored) and
# replays them first until they pass; "ci" (CI=true) keeps nothing between runs
# (database=None) and prints a @reproduce_failure blob for any failure.
for name, examples, database in (("dev", 40, {}), ("ci", 40, {"database": None}),
                                 ("thorough", 400, {})):
    settings.register_profile(name, max_examples=examples, deadline=None, derandomize=False,
                              print_blob=True, suppress_health_check=[HealthCheck.too_slow],
                              **database)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))


# These modules run on both index backends (issue 12): SQLite and PostgreSQL.
BOTH_INDEXES = {"test_http_conditional", "test_reload", "test_redis_cache", "test_hostile",
                "test_one_version", "test_readiness", "test_archives",
                "test_state_in_index", "test_websub", "test_upstream", "test_subscribers",
                "test_subscribers_import", "test_story_once"}


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


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the tests' own (tests/private_postgres.py), for
    faults the machine's shared server must never see; started once, on first use."""
    with private_postgres() as cluster:
        yield cluster


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


@pytest.fixture
def clock() -> FakeClock:
    """The injectable clock (feedsvc/clock.py), standing still at 2026-01-10 12:00 UTC
    until a test sets `clock.now` or calls `clock.advance(seconds)`."""
    return FakeClock(dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def served_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config of the site the module's `server` serves: the readers' site
    (tests/readers_site.py) unless the module overrides this fixture."""
    return readers_site(tmp_path_factory.mktemp("served") / "site")


@pytest.fixture(scope="module")
def server_options() -> dict[str, Any]:
    """Keywords for the module's `server` (see support.Server); a module overrides this."""
    return {}


@pytest.fixture(scope="module")
def server(served_site: Path, server_options: dict[str, Any]) -> Iterator[Server]:
    """`feedsvc serve` as a subprocess on a free loopback port, one per module,
    serving `served_site`."""
    with running(served_site, **server_options) as s:
        yield s


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start servers of a test's own (`serve(config, workers=2)`); all are
    stopped when the test ends."""
    with ExitStack() as stack:
        yield lambda config, **options: stack.enter_context(running(config, **options))
