"""The tree stays as `ruff` (configuration in pyproject.toml: pycodestyle, pyflakes, import order, bugbear,
pyupgrade, the Airflow rules) and its formatter leave it: the same check `.pre-commit-config.yaml` runs before a
commit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.parametrize(
    "command", [["check", "--output-format", "concise"], ["format", "--check"]], ids=["lint", "format"]
)
def test_the_tree_is_ruff_clean(command):
    assert RUFF, "ruff is not installed (requirements-dev.txt)"
    r = subprocess.run([RUFF, *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"ruff {' '.join(command)} found:\n{r.stdout[-3000:]}{r.stderr[-1000:]}"
