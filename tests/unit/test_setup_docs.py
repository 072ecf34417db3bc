"""The set-up instructions (docs/running.md) agree with the Makefile: the export lines for running without make set what
`make env` (the Makefile's exports) sets, and `make help` names every target."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNING = (ROOT / "docs" / "running.md").read_text()
pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="needs make")

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C"}


def _env_after(script: str) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f"set -e\n{script}\nenv -0"], env=BASE_ENV, cwd=ROOT, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def _readme_exports() -> str:
    section = RUNNING[RUNNING.index("## Running the DAGs without the Makefile") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines, keep = [], False
    for line in block.splitlines():  # the export statements with their continuation lines
        keep = line.startswith("export ") or (keep and lines and lines[-1].endswith("\\"))
        if keep:
            lines.append(line)
    assert lines, block
    return "\n".join(lines)


def test_readme_exports_match_the_makefile():
    from_make = _env_after('eval "$(make -s --no-print-directory env)"')
    by_hand = _env_after(_readme_exports())
    exported = [
        "PATH",
        "PYTHONPATH",
        "MLOPS_HOME",
        "AIRFLOW_HOME",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__PARALLELISM",
        "GX_ANALYTICS_ENABLED",
        "MLOPS_START_DATE",
    ]
    assert {k: from_make.get(k) for k in exported} == {k: by_hand.get(k) for k in exported}
    assert from_make["AIRFLOW_HOME"] == str(ROOT / ".mlops" / "airflow")  # per MLOPS_HOME, not a shared /tmp
    # and make env sets nothing the page leaves out
    made = {k for k in from_make if k not in BASE_ENV and k not in ("PWD", "SHLVL", "_", "OLDPWD")}
    assert made <= set(exported), made - set(exported)


def test_make_help_names_every_target():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    assert targets <= set(phony) | {"help"}, targets - set(phony)
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    shown = set(re.findall(r"^make ([a-z-]+)", out.stdout, re.M))
    assert set(phony) - {"help"} <= shown, set(phony) - shown
