"""Which modules may import which (README, "Layout"): the contracts in
pyproject.toml ([tool.importlinter]), checked by import-linter over the real
import graph — layers from the CLI down to the helpers, no import cycle, Flask
only at the HTTP edge, no upstream stack in serving, pure feed building."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).parent.parent


def test_the_imports_keep_every_layering_contract() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert f"{len(contracts['contracts'])} kept, 0 broken" in done.stdout, done.stdout
