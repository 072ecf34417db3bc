"""Changing the model on a branch, as a person would (dvc.yaml, make report), in a throw-away git repository made
from the project: a baseline committed on main with its pipeline run and pushed, a branch that changes one
hyperparameter, the report's numbers against both sides' metrics.json, a change that fails the gate, a rerun
that skips every stage, and the report's errors (no base revision, the base's model unreachable).

The real DVC (the Makefile's .venv-dvc) and the project's Python (.venv, linked into the repository) run
everything; the snapshot is short (12 days) and the gate's calibration ceiling looser, for speed on 2 cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
DVC_VENV = ROOT / ".venv-dvc"


def run(repo: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AIRFLOW", "PYTHONPATH"))}
    env |= {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    p = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(repo, str(DVC_VENV / "bin" / "dvc"), *args, check=check)


def report(repo: Path, base: str = "main") -> subprocess.CompletedProcess:
    """make report, the venvs taken as they are (linked: make must not reinstall them)."""
    return run(
        repo,
        "make",
        "-o",
        str(repo / ".venv" / ".installed"),
        "-o",
        str(repo / ".venv-dvc" / ".installed"),
        "report",
        f"REPORT_BASE={base}",
        check=False,
    )


def edit_yaml(path: Path, section: str | None, **values) -> None:
    """Set keys in a YAML file, keeping its comments (a line edit, as a person would)."""
    text = path.read_text()
    for key, value in values.items():
        indent = "  " if section else ""
        new = json.dumps(value)
        text, n = re.subn(rf"(?m)^({indent}{key}:\s*)(\S+)", lambda m, new=new: m.group(1) + new, text, count=1)
        assert n == 1, (path, key)
    path.write_text(text)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    if not (DVC_VENV / "bin" / "dvc").exists():
        pytest.fail("no .venv-dvc: make test makes it (make dvc-setup)")
    repo = tmp_path_factory.mktemp("model-change")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if f.startswith(("data/", "build/")) or not src.is_file():
            continue
        dst = repo / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        dst.chmod(src.stat().st_mode)
    (repo / ".venv").symlink_to(VENV)
    (repo / ".venv-dvc").symlink_to(DVC_VENV)
    for stale in ("dvc.lock", "build/metrics.json"):
        (repo / stale).unlink(missing_ok=True)
    params = repo / "params.yaml"
    edit_yaml(params, "snapshot", first="2013-01-10", last="2013-01-21")
    edit_yaml(params, "train", window_days=12, min_days=8)
    edit_yaml(repo / "include/config/gate.yaml", None, max_ece=0.3)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "the project")
    return repo


def ran(out: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", out)


def test_a_change_gets_a_trained_candidate_and_a_report(repo):
    # main: the pipeline runs, its lock, metrics and plots are committed, its outputs pushed to the remote
    first = dvc(repo, "repro")
    assert ran(first.stdout) == ["snapshot", "train", "evaluate"], first.stdout
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline model")
    dvc(repo, "push")
    main_metrics = json.loads((repo / "build/metrics.json").read_text())
    manifest = json.loads((repo / "data/snapshot/manifest.json").read_text())
    assert manifest["first"] == "2013-01-10" and len(manifest["datasets"]["flights"]["days"]) == 12

    # nothing changed: every stage is skipped, nothing rewritten
    model = (repo / "build/model/model.txt").read_bytes()
    again = dvc(repo, "repro")
    assert ran(again.stdout) == [] and again.stdout.count("didn't change, skipping") == 3, again.stdout
    assert (repo / "build/model/model.txt").read_bytes() == model

    # a branch changes one hyperparameter: the snapshot is reused, the model retrained, the report compares
    run(repo, "git", "checkout", "-qb", "fewer-leaves")
    edit_yaml(repo / "params.yaml", "lgbm", num_leaves=15)
    branch = dvc(repo, "repro")
    assert ran(branch.stdout) == ["train", "evaluate"], branch.stdout
    branch_metrics = json.loads((repo / "build/metrics.json").read_text())
    rep = report(repo)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    text = (repo / "report.md").read_text()
    result = json.loads((repo / "report.json").read_text())
    d = result["decision"]
    assert d["passed"] and "**Gate PASSED**" in text
    # the report's numbers are both sides' metrics.json: the same held-out rows, each model scored as it was
    assert round(d["candidate"]["auc"], 6) == branch_metrics["test"]["auc"]
    assert round(d["champion"]["auc"], 6) == main_metrics["test"]["auc"]
    assert main_metrics["test"]["auc"] != branch_metrics["test"]["auc"]
    checks = {c["name"]: c for c in d["checks"]}
    assert set(checks) == {"auc_floor", "calibration", "auc_vs_champion", "slices"}
    change = branch_metrics["test"]["auc"] - main_metrics["test"]["auc"]
    assert abs(checks["auc_vs_champion"]["value"] - change) < 1e-5
    assert f"{checks['auc_vs_champion']['value']:.4f}" in text
    assert re.search(r"\| params\.yaml \| lgbm\.num_leaves \| 63 +\| 15 ", text), text
    old, new = (round(m["test"]["auc"], 4) for m in (main_metrics, branch_metrics))  # dvc --precision 4
    assert re.search(rf"\| build/metrics\.json \| test\.auc +\| {old} +\| {new} ", text), text
    for image in ("roc", "calibration", "importance"):
        assert f"(report-images/{image}.png)" in text
        assert (repo / "report-images" / f"{image}.png").read_bytes()[:4] == b"\x89PNG"

    # a change that makes the gate fail: make report exits non-zero, naming the failed checks
    edit_yaml(repo / "params.yaml", "lgbm", num_leaves=2, learning_rate=0.005)
    dvc(repo, "repro")
    rep = report(repo)
    assert rep.returncode != 0 and "report.md: gate FAILED" in rep.stdout, rep.stdout + rep.stderr
    failed = json.loads((repo / "report.json").read_text())["decision"]["failed"]
    assert "auc_vs_champion" in failed and f"**Gate FAILED: {', '.join(failed)}**" in (repo / "report.md").read_text()

    # the report's own errors are errors, never "no model on the base"
    rep = report(repo, base="no-such-branch")
    assert rep.returncode != 0 and "no revision 'no-such-branch'" in rep.stderr, rep.stderr
    assert not (repo / "report.md").exists()  # the last run's report is gone: nothing stale to post
    for gone in (repo / ".dvc/cache", repo / ".dvc-storage"):
        subprocess.run(["rm", "-rf", str(gone)], check=True)
    rep = report(repo)
    assert rep.returncode != 0 and "could not be fetched" in rep.stderr, rep.stderr


def test_the_pipeline_declares_every_parameter_it_reads():
    """Each params.yaml section and gate.yaml a stage reads is declared in dvc.yaml: a change to any of them reruns
    the stages that read it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {name: [p if isinstance(p, str) else next(iter(p)) for p in s["params"]] for name, s in stages.items()}
    assert declared["snapshot"] == ["snapshot"]
    assert {"snapshot.last", "train", "lgbm", "baseline"} <= set(declared["train"])
    assert declared["evaluate"] == ["include/config/gate.yaml"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params) == {"train", "lgbm", "baseline", "snapshot"}  # a new section must be declared above
    for s in stages.values():
        assert s["cmd"].startswith(".venv/bin/python -m include.mlops.repro ")
