"""The set-up leaves Airflow's home, its SQLite database (connections, variables) and MLOPS_HOME/secrets to their
owner alone, whatever the umask: ``scripts/private.sh`` (folders 0700, files 0600), run by the Makefile's
migrate rule, which runs here for real with a stand-in ``airflow`` that makes the database as SQLite does (the
umask's 0644)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = ROOT / "scripts" / "private.sh"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_narrows_folders_and_files_and_skips_what_is_missing(tmp_path):
    folder, file = tmp_path / "home", tmp_path / "home" / "airflow.db"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    file.write_text("db")
    file.chmod(0o644)
    subprocess.run([str(PRIVATE), str(folder), str(file), str(tmp_path / "missing")], check=True, timeout=30)
    assert (mode(folder), mode(file)) == (0o700, 0o600)
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_the_migrate_rule_leaves_the_database_and_the_secrets_private(tmp_path):
    bin_dir, home = tmp_path / "bin", tmp_path / "mlops"
    bin_dir.mkdir()
    (bin_dir / ".installed").touch()
    airflow = bin_dir / "airflow"  # `db migrate` makes the database as SQLite does: with the umask's mode
    airflow.write_text('#!/bin/sh\n[ "$1 $2" = "db migrate" ] && echo db > "$AIRFLOW_HOME/airflow.db"\nexit 0\n')
    airflow.chmod(0o755)
    (home / "secrets").mkdir(parents=True, mode=0o755)
    (home / "secrets").chmod(0o755)
    target = home / "airflow" / ".migrated"
    out = subprocess.run(
        ["bash", "-c", 'umask 022 && exec make -s -o "$1/.installed" BIN="$1" MLOPS_HOME="$2" AIRFLOW_HOME="$3" "$4"']
        + ["make", str(bin_dir), str(home), str(home / "airflow"), str(target)],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert target.exists() and (home / "airflow" / "airflow.db").read_text() == "db\n"
    assert mode(home / "airflow") == 0o700 and mode(home / "airflow" / "airflow.db") == 0o600
    assert mode(home / "secrets") == 0o700
