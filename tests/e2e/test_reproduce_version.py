"""Every registered version can be rebuilt: train_model (dag.test, real Horovod workers, MLflow) keeps the version's
exact training set as a DVC snapshot on an S3 remote (the moto server); a rerun of ingestion then corrects a
curated partition it trained on, and the lake's training folder goes; make reproduce still rebuilds the registered
model from the snapshot, byte for byte. A snapshot changed on the remote is refused by its data fingerprint, and a
version registered without a snapshot is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from include.mlops.core import layout, registry

ROOT = Path(__file__).resolve().parents[2]
DAYS = [f"2013-02-{d:02d}" for d in range(1, 15)]
CONF = {"end_date": DAYS[-1], "window_days": 14, "min_days": 10, "num_boost_round": 40, "gate_min_auc": 0.5}
CONF |= {"gate_max_ece": 0.3}


@pytest.fixture
def setting(monkeypatch, tmp_path, moto_server):
    """Its own lake, registered model and S3 bucket for the snapshots (the environment make reproduce gets too)."""
    import boto3

    bucket = f"snapshots-{uuid.uuid4().hex[:8]}"
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", **creds).create_bucket(Bucket=bucket)
    env = {
        "MLOPS_LAKE_URL": (tmp_path / "lake").as_uri(),
        "MLOPS_MODEL_NAME": f"e2e_rebuild_{uuid.uuid4().hex[:6]}",
        "DVC_REMOTE_URL": f"s3://{bucket}/dvc",
        "DVC_REMOTE_ENDPOINT": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"bucket": bucket, "endpoint": moto_server, "creds": creds}


def reproduce(version: str, **env: str) -> subprocess.CompletedProcess:
    venv = Path(sys.prefix)
    return subprocess.run(
        ["make", "-s", "-o", str(venv / ".installed"), "-o", str(ROOT / ".venv-dvc" / ".installed"), "reproduce"]
        + [f"VERSION={version}"],
        cwd=ROOT,
        env={**os.environ, "DVC_NO_ANALYTICS": "1", **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def rerun_ingestion_with_other_rows(lake, date: str) -> int:
    """The upstream system sends the day again, corrected (every tenth flight gone); ingestion's own steps replace
    the curated partition."""
    from include.mlops.core.config import Settings
    from include.mlops.core.schema import dataset
    from include.mlops.ingest import ingestion
    from include.mlops.simulate.upstream import day_table, to_csv_bytes

    spec = dataset("flights")
    df = day_table("flights", date)
    df = df[df.index % 10 != 0]
    lake.rm(layout.landing("flights", date))
    lake.write_bytes(to_csv_bytes(df), layout.landing("flights", date), spec.landing_file)
    lake.touch(layout.landing("flights", date), layout.SUCCESS)
    b = ingestion.batch(spec, date, run="correction")
    staged = ingestion.extract(lake, b)
    ingestion.check(lake, b, Settings.from_env(), staged["sha256"])
    return ingestion.curate(lake, b, staged["sha256"])["rows"]


def test_a_version_is_rebuilt_from_its_snapshot_after_the_lake_changed(run_dag, slack, setting):
    from curation import write_curated

    from include.mlops.core.config import Settings
    from include.mlops.core.lake import Lake

    lake = Lake(Settings.from_env().lake_url)
    write_curated(lake, DAYS)
    run = run_dag("train_model", DAYS[-1], conf=CONF | {"reason": "rebuild test"})
    assert run.state == "success", run
    version = registry.versions()[-1]["version"]
    import mlflow

    tags = mlflow.get_run(registry.versions()[-1]["run_id"]).data.tags
    assert tags["data_snapshot"].startswith("md5:") and tags["data_snapshot"].endswith(".dir")
    rebuild = registry.load_artifact(version, "rebuild.json")
    assert rebuild["snapshot"] == tags["data_snapshot"] and rebuild["fingerprint"] == tags["data_fingerprint"]
    assert rebuild["workers"] == 2 and rebuild["remote"] == f"s3://{setting['bucket']}/dvc/versions"

    # the lake moves on: a corrected partition of a day it trained on, and the run's training folder gone
    before = len(lake.read_parquet(*layout.curated_file("flights", DAYS[3])))
    assert rerun_ingestion_with_other_rows(lake, DAYS[3]) < before
    run_key = run.run_id.replace(":", "").replace("+", "")
    lake.rm(layout.training(run_key))

    done = reproduce(version, MLOPS_CODE_VERSION="0123abc")  # a checkout of other code: said, naming both
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"snapshot {rebuild['snapshot']}" in done.stdout and "data fingerprint matches" in done.stdout
    trained_by = rebuild["code_version"]
    assert f"warning: version {version} was trained by code {trained_by}, this checkout is 0123abc" in done.stdout
    assert "identical: the rebuilt model is the registered one, byte for byte" in done.stdout, done.stdout

    # the snapshot changed on the remote: one train shard's object holds another's bytes
    import boto3

    s3 = boto3.client("s3", endpoint_url=setting["endpoint"], region_name="us-east-1", **setting["creds"])
    listing_key = f"dvc/versions/files/md5/{rebuild['snapshot'][4:6]}/{rebuild['snapshot'][6:]}"
    entries = json.loads(s3.get_object(Bucket=setting["bucket"], Key=listing_key)["Body"].read())
    md5 = {e["relpath"]: e["md5"] for e in entries}

    def key(relpath: str) -> str:
        return f"dvc/versions/files/md5/{md5[relpath][:2]}/{md5[relpath][2:]}"

    other = s3.get_object(Bucket=setting["bucket"], Key=key("train/part-00001.parquet"))["Body"].read()
    s3.put_object(Bucket=setting["bucket"], Key=key("train/part-00000.parquet"), Body=other)
    refused = reproduce(version)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert f"snapshot {rebuild['snapshot']} of version {version} does not hold the rows it was trained on" in (
        refused.stderr
    ), refused.stderr
    assert "identical" not in refused.stdout


def test_a_version_without_a_snapshot_and_a_wrong_version_are_refused_by_name(setting, monkeypatch, tmp_path):
    """An older version (registered before snapshots: no rebuild.json) cannot be rebuilt: said, not guessed."""
    import mlflow

    from include.mlops.kinds import lightgbm

    registry._mlflow()  # the test's tracking store
    model = tmp_path / "model.txt"
    import lightgbm as lgb
    import numpy as np

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=3).save_model(str(model))
    reg = registry.log_training_run(
        model_path=model,
        params={},
        metrics={},
        tags={"run_key": "old-version"},
        feature_spec={},
        feature_importance={},
        register_model=lightgbm.register,
    )
    assert mlflow.get_run(reg.run_id)
    done = reproduce(reg.version)
    assert done.returncode != 0 and "it was registered before training kept snapshots" in done.stderr, done.stderr
    bad = reproduce("latest")
    assert bad.returncode != 0 and "VERSION='latest'" in bad.stderr, bad.stderr
    skip = ["-o", str(Path(sys.prefix) / ".installed"), "-o", str(ROOT / ".venv-dvc" / ".installed")]
    empty = subprocess.run(["make", "-s", *skip, "reproduce"], cwd=ROOT, capture_output=True, text=True)
    assert empty.returncode != 0 and "make reproduce VERSION=n" in empty.stderr


def test_a_snapshot_the_remote_does_not_hold_is_an_error_naming_it(tmp_path, monkeypatch):
    from include.mlops.repro.rebuild import RebuildError, fetch

    monkeypatch.setenv("DVC_REMOTE_URL", str(tmp_path / "empty-remote"))
    monkeypatch.delenv("DVC_REMOTE_ENDPOINT", raising=False)
    snap = "md5:0123456789abcdef0123456789abcdef.dir"
    with pytest.raises(RebuildError, match=rf"snapshot {snap} could not be fetched from the DVC remote .*empty-remote"):
        fetch(snap, tmp_path / "dvc", str(ROOT / ".venv-dvc" / "bin" / "dvc"))
