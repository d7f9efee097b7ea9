from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from support import make_site

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
