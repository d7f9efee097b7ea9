"""What the fuzzers (scripts/fuzz.py) found, kept: each file under
tests/fixtures/fuzz/<target>/ is named after its case and replayed through
the same check the fuzzer runs (tests/fuzz_targets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_targets import TARGETS

CASES = sorted((Path(__file__).parent / "fixtures" / "fuzz").glob("*/*"))


def test_every_case_belongs_to_a_target() -> None:
    assert CASES and {c.parent.name for c in CASES} <= set(TARGETS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_fuzz_case_holds(case: Path) -> None:
    TARGETS[case.parent.name](case.read_bytes())
