"""A short run of bench/soak.py (see docs/RELIABILITY.md for the full one):
polling under writes, config edits and Redis cuts loses nothing and never fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support import REPO, machine_redis


@pytest.fixture(autouse=True, scope="module")
def _machine_redis() -> Iterator[None]:
    with machine_redis():
        yield

MUST_BE_ZERO = ("5xx", "connection_errors", "etag_mismatches", "unexpected_404",
                "posts_never_served", "versions_standing_5s_never_served",
                "final_versions_not_served", "server_tracebacks")


def test_short_soak_loses_nothing_and_never_fails() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--json", "--duration", "20",
         "--pollers", "4", "--config-every", "4", "--cut-every", "6", "--settle", "15"],
        capture_output=True, text=True, timeout=110, cwd=REPO)
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    assert {k: report[k] for k in MUST_BE_ZERO} == dict.fromkeys(MUST_BE_ZERO, 0), report["examples"]
    # ... and the run did what it claims: load, conditional hits, every kind of change.
    assert report["requests"] > 500
    assert report["status"].get("304", 0) > 0
    assert report["writer"]["add"] >= 10 and report["writer"]["edit"] >= 1
    assert report["writer"]["config_valid"] >= 1 and report["writer"]["config_invalid"] >= 1
    assert report["redis_cuts"] >= 2 and report["redis_documents_at_end"] > 0
    assert run.returncode == 0, run.stderr
