"""Changing the model on a branch, as a person would (dvc.yaml, make report), in throw-away git repositories made
from the project: a baseline committed on main with its pipeline run and pushed to an S3 remote (the moto server),
a branch that changes one hyperparameter, the report's numbers against both sides' metrics.json, a change that
fails the gate, a rerun that skips every stage, the report's errors (no base revision, the base's model
unreachable); and the pull-request workflow (.github/workflows/model-ci.yml): valid against GitHub's schema, its
permissions and checkout, and its run: steps in order in a clone of that repository, but the suite and the post.

The real DVC (the Makefile's .venv-dvc) and the project's Python (.venv, linked into the repository) run
everything; the snapshot is short (12 days) and the gate's calibration ceiling looser, for speed on 2 cores."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
DVC_VENV = ROOT / ".venv-dvc"


CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def run(repo: Path, *cmd: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "AIRFLOW", "PYTHONPATH", "AWS_", "DVC_REMOTE_"))
    }
    full |= {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    full |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", **(env or {})}
    p = subprocess.run(cmd, cwd=repo, env=full, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def dvc(repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run(repo, str(DVC_VENV / "bin" / "dvc"), *args, check=check, env=env)


def report(repo: Path, base: str = "main", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
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
        env=env,
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
def s3_remote(moto_server) -> dict[str, str]:
    """The DVC remote the workflow's secrets name: a bucket on the moto server, credentials in the environment."""
    import boto3

    bucket = f"dvc-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", **CREDENTIALS).create_bucket(Bucket=bucket)
    return {
        "DVC_REMOTE_URL": f"s3://{bucket}/pipeline",
        "DVC_REMOTE_ENDPOINT": moto_server,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory, s3_remote) -> Path:
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
    run(repo, "scripts/dvc-remote.sh", env=s3_remote)  # .dvc/config.local: not committed
    # main: the pipeline runs, its lock, metrics and plots are committed, its outputs pushed to the remote
    first = dvc(repo, "repro")
    assert ran(first.stdout) == ["snapshot", "train", "evaluate"], first.stdout
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline model")
    pushed = dvc(repo, "push", env=s3_remote)
    assert "pushed" in pushed.stdout, pushed.stdout
    return repo


def ran(out: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", out)


def test_a_change_gets_a_trained_candidate_and_a_report(repo, s3_remote):
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
    rep = report(repo, env=s3_remote)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    text = (repo / "report.md").read_text()
    result = json.loads((repo / "report.json").read_text())
    d = result["decision"]
    assert d["passed"] and "**Gate PASSED**" in text
    # the deployment's latest tuning study beside the branch's parameters: this one's lake has none, and says so
    assert "## Latest tuning study" in text and result["study"]["result"] is None and "error" not in result["study"]
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

    # an experiment with one value changed (dvc exp run -S), beside the branch's workspace
    exp = dvc(repo, "exp", "run", "-S", "lgbm.num_leaves=31")
    assert ran(exp.stdout) == ["train", "evaluate"], exp.stdout
    assert re.search(r"(?m)^  num_leaves: 31\b", (repo / "params.yaml").read_text())  # applied to the workspace
    assert dvc(repo, "exp", "list", "--name-only").stdout.split(), "no experiment recorded"

    # a change that makes the gate fail: make report exits non-zero, naming the failed checks
    edit_yaml(repo / "params.yaml", "lgbm", num_leaves=2, learning_rate=0.005)
    dvc(repo, "repro")
    rep = report(repo, env=s3_remote)
    assert rep.returncode != 0 and "report.md: gate FAILED" in rep.stdout, rep.stdout + rep.stderr
    failed = json.loads((repo / "report.json").read_text())["decision"]["failed"]
    assert "auc_vs_champion" in failed and f"**Gate FAILED: {', '.join(failed)}**" in (repo / "report.md").read_text()

    # the report's own errors are errors, never "no model on the base"
    rep = report(repo, base="no-such-branch", env=s3_remote)
    assert rep.returncode != 0 and "no revision 'no-such-branch'" in rep.stderr, rep.stderr
    assert not (repo / "report.md").exists()  # the last run's report is gone: nothing stale to post
    # main's model only on the remote (the cache emptied), and the remote unreachable: an error
    shutil.rmtree(repo / ".dvc" / "cache")
    dvc(repo, "remote", "modify", "--local", "ci", "endpointurl", "http://127.0.0.1:9")
    rep = report(repo, env=s3_remote)
    assert rep.returncode != 0 and "could not be fetched" in rep.stderr, rep.stderr
    assert not (repo / "report.md").exists()
    dvc(repo, "remote", "modify", "--local", "ci", "endpointurl", s3_remote["DVC_REMOTE_ENDPOINT"])
    rep = report(repo, env=s3_remote)  # from the remote alone, once it answers
    assert "report.md: gate FAILED" in rep.stdout, rep.stdout + rep.stderr


def test_the_pipeline_declares_every_parameter_it_reads():
    """Each params.yaml section and gate.yaml a stage reads is declared in dvc.yaml: a change to any of them reruns
    the stages that read it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {name: [p if isinstance(p, str) else next(iter(p)) for p in s["params"]] for name, s in stages.items()}
    assert declared["snapshot"] == ["snapshot"]
    assert {"snapshot.last", "train", "lgbm", "baseline"} <= set(declared["train"])
    assert declared["evaluate"] == ["include/config/gate.yaml"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # a new section must be declared above; tune: is read by tune_model alone, never by a stage
    assert set(params) == {"train", "lgbm", "baseline", "snapshot", "tune"}
    for s in stages.values():
        assert s["cmd"].startswith(".venv/bin/python -m include.mlops.repro ")


WORKFLOW = ROOT / ".github" / "workflows" / "model-ci.yml"
NOT_RUN_HERE = ("make test", "cml ")  # the suite itself (this is it), and CML's post (its npm package)


def test_the_workflow_is_valid_and_asks_only_for_what_posting_needs():
    check = subprocess.run(
        [str(DVC_VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True]  # YAML 1.1 reads the key "on" as True
    assert set(triggers["pull_request"]["paths"]) == {
        "include/**",
        "dags/**",
        "plugins/**",
        "expectations/**",
        "params.yaml",
        "dvc.yaml",
    }
    assert wf["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = wf["jobs"]["model"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # full history: a shallow clone breaks dvc exp and the diffs
    assert any(s.get("uses", "").startswith("iterative/setup-cml@") for s in steps)
    post = next(s for s in steps if "cml comment create" in s.get("run", ""))
    assert "report.md" in post["run"] and post["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    # secrets only from the repository's encrypted secrets
    for name, value in wf["jobs"]["model"]["env"].items():
        if name.startswith(("AWS_", "DVC_REMOTE")):
            assert value == f"${{{{ secrets.{name} }}}}", (name, value)
    runs = [s["run"] for s in steps if "run" in s]
    order = ["make test", "dvc-remote.sh", "dvc pull", "make repro", "make report", "cml comment create", "dvc push"]
    assert [next(i for i, r in enumerate(runs) if o in r) for o in order] == sorted(
        next(i for i, r in enumerate(runs) if o in r) for o in order
    )


def test_the_workflows_steps_run_in_order_on_a_pull_request(repo, s3_remote, tmp_path):
    """A clone of the repository above, as the workflow's checkout makes it (its default branch as origin/main), on
    a branch that changes one hyperparameter: each run: step of a pull request's job in order."""
    pr = tmp_path / "pr"
    run(tmp_path, "git", "clone", "-q", "--branch", "main", str(repo), str(pr))
    (pr / ".venv").symlink_to(VENV)
    (pr / ".venv-dvc").symlink_to(DVC_VENV)
    for f in ("requirements.txt", "requirements-dev.txt", "constraints-3.11.txt", "scripts/install_horovod.sh"):
        os.utime(pr / f, (1, 1))  # older than the linked venvs: make takes them as installed
    for f in ("requirements-dvc.txt", "constraints-dvc.txt"):
        os.utime(pr / f, (1, 1))
    run(pr, "git", "checkout", "-qb", "more-leaves")
    edit_yaml(pr / "params.yaml", "lgbm", num_leaves=31)
    run(pr, "git", "commit", "-qam", "fewer leaves")
    wf = yaml.safe_load(WORKFLOW.read_text())
    job = wf["jobs"]["model"]
    env = {"BASE": "main", "DVC_NO_ANALYTICS": "1", **s3_remote}
    done = []
    for step in job["steps"]:
        cmd = step.get("run")
        if cmd is None or cmd.startswith(NOT_RUN_HERE) or "github.event_name == 'push'" in str(step.get("if", "")):
            continue
        p = run(pr, "bash", "-eo", "pipefail", "-c", cmd, env=env, check=False)
        done.append((step["name"], p))
        assert p.returncode == 0, (step["name"], p.stdout[-2000:], p.stderr[-2000:])
    names = [n for n, _ in done]
    assert names == [
        "The default branch, for the comparison",
        "The DVC remote, from the secrets",
        "The pipeline's outputs already on the remote",
        "The pipeline (only the stages whose inputs changed)",
        "The report against the default branch",
    ]
    repro = dict(done)["The pipeline (only the stages whose inputs changed)"].stdout
    # the snapshot came from the remote (dvc pull), not rebuilt; the changed parameter retrained the model
    assert "Stage 'snapshot' didn't change, skipping" in repro and ran(repro) == ["train", "evaluate"], repro
    text = (pr / "report.md").read_text()
    assert "# Model report: this branch against `origin/main`" in text and "lgbm.num_leaves | 63" in text
    assert (pr / "report-images" / "roc.png").exists()
