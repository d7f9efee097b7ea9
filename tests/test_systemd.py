"""deploy/systemd/feedsvc.service: `systemd-analyze verify` accepts it and
`systemd-analyze security --offline=true` rates its exposure 2.5 or lower.
The unit is checked as shipped but for two paths (the venv's feedsvc and the
example environment file), which verify needs to exist; systemd-analyze
comes with the systemd package (scripts/test-deps installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from support import REPO

SYSTEMD = REPO / "deploy" / "systemd"
ANALYZE = shutil.which("systemd-analyze")
EXEC = "/opt/feedsvc/venv/bin/feedsvc"
ENV_FILE = "/etc/feedsvc/feedsvc.env"


def installed_unit(tmp_path: Path) -> Path:
    text = (SYSTEMD / "feedsvc.service").read_text(encoding="utf-8")
    assert text.count(EXEC) == 1 and text.count(ENV_FILE) == 1
    feedsvc = Path(sys.executable).parent / "feedsvc"
    unit = tmp_path / "feedsvc.service"
    unit.write_text(text.replace(EXEC, str(feedsvc)).replace(ENV_FILE, str(SYSTEMD / "feedsvc.env")),
                    encoding="utf-8")
    return unit


def test_systemd_analyze_is_there() -> None:
    assert ANALYZE, "systemd-analyze is missing: scripts/test-deps (make test) installs systemd"


def test_the_unit_verifies(tmp_path: Path) -> None:
    assert ANALYZE
    proc = subprocess.run([ANALYZE, "verify", str(installed_unit(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_the_unit_is_sandboxed(tmp_path: Path) -> None:
    assert ANALYZE
    proc = subprocess.run([ANALYZE, "security", "--offline=true", str(installed_unit(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for feedsvc\.service: ([\d.]+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.5, proc.stdout


def test_a_bare_unit_rates_unsafe(tmp_path: Path) -> None:
    """The yardstick works: the same service without the sandbox is UNSAFE."""
    assert ANALYZE
    bare = tmp_path / "feedsvc.service"
    bare.write_text(f"[Service]\nExecStart={sys.executable} -m feedsvc serve\n", encoding="utf-8")
    proc = subprocess.run([ANALYZE, "security", "--offline=true", str(bare)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for feedsvc\.service: ([\d.]+)", proc.stdout)
    assert m and float(m.group(1)) > 9, proc.stdout


def test_the_env_file_names_every_variable_the_unit_uses() -> None:
    unit = (SYSTEMD / "feedsvc.service").read_text(encoding="utf-8")
    env = (SYSTEMD / "feedsvc.env").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(FEEDSVC_\w+)\}", unit))
    defined = set(re.findall(r"^(FEEDSVC_\w+)=", env, re.M))
    assert used and used == defined
