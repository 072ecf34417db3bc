"""A training set's DVC snapshot (include/mlops/train/snapshots.py) on a folder remote: what it holds, that the
same set gives the same identity, that DVC's layout is kept, and that the fingerprint comes back from the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.train import snapshots
from include.mlops.train.distributed import write_training_set
from include.mlops.train.features import TrainingSet, fingerprint


def _training_set(n: int = 30) -> TrainingSet:
    from include.mlops.core.frame import FeatureSpec
    from include.mlops.core.schema import model

    rng = np.random.default_rng(3)
    dates = [f"2013-01-{1 + i // 6:02d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            model().key_field: [f"k{i:03d}" for i in range(n)],
            "batch_date": dates,
            "distance": rng.normal(size=n).astype("float32"),
            model().label.name: rng.integers(0, 2, n).astype("int8"),
        }
    )
    spec = FeatureSpec(numeric=["distance"], categorical=[], categories={}, label=model().label.name)
    split = {"train": ["2013-01-01", "2013-01-02", "2013-01-03"], "validation": ["2013-01-04"], "test": ["2013-01-05"]}
    return TrainingSet(frame=frame, spec=spec, split=split, fingerprint=fingerprint(frame, spec, split))


@pytest.fixture
def staged(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    ts = _training_set()
    folder = layout.training("run1")
    meta = write_training_set(lake, folder, ts, shards=3)
    lake.write_parquet(ts.part("test"), folder, layout.TRAINING_HOLDOUT)
    return lake, folder, meta, ts


def test_a_snapshot_is_a_dvc_directory_on_the_remote_and_the_same_set_gives_the_same_identity(staged, tmp_path):
    lake, folder, meta, _ = staged
    env = {"DVC_REMOTE_URL": str(tmp_path / "remote")}
    snap = snapshots.push(lake, folder, env)
    assert snap.startswith("md5:") and snap.endswith(".dir")
    digest = snap[len("md5:") :]
    listing = tmp_path / "remote" / "versions" / "files" / "md5" / digest[:2] / digest[2:]
    entries = json.loads(listing.read_text())
    assert sorted(e["relpath"] for e in entries) == sorted(
        "/".join(p) for p in snapshots.training_set_files(meta)
    )  # spec, validation, test, holdout and the three shards; never the model
    for e in entries:
        assert (tmp_path / "remote" / "versions" / "files" / "md5" / e["md5"][:2] / e["md5"][2:]).is_file()
    assert snapshots.push(lake, folder, env) == snap  # content-addressed: a retry writes the same object
    assert snapshots.dvc_file(snap) == f"outs:\n- md5: {digest}\n  path: training-set\n  hash: md5\n"


def test_the_fingerprint_comes_back_from_the_files(staged, tmp_path):
    lake, folder, meta, ts = staged
    out = tmp_path / "fetched"
    for parts in snapshots.training_set_files(meta):
        (out.joinpath(*parts)).parent.mkdir(parents=True, exist_ok=True)
        out.joinpath(*parts).write_bytes(lake.read_bytes(folder, *parts))
    frame, _ = snapshots.read_training_set(out)
    assert list(frame["batch_date"]) == list(ts.frame["batch_date"])  # the shards' rows back in their order
    assert snapshots.fingerprint_of(out) == ts.fingerprint == meta["fingerprint"]
    shard = out.joinpath(*layout.training_shard(0))
    changed = pd.read_parquet(shard)
    changed.loc[0, "distance"] += 1
    changed.to_parquet(shard)
    assert snapshots.fingerprint_of(out) != ts.fingerprint


def test_the_remote_and_the_identity_are_checked(tmp_path):
    assert snapshots.remote({}) == (f"{snapshots.DEFAULT_REMOTE}/versions", None)  # a folder of their own
    assert snapshots.remote({"DVC_REMOTE_URL": "s3://b/p/", "DVC_REMOTE_ENDPOINT": "http://h:9"}) == (
        "s3://b/p/versions",
        "http://h:9",
    )
    with pytest.raises(snapshots.SnapshotError, match="an s3://bucket/path or a folder"):
        snapshots._odb("gs://bucket/x", None)
    with pytest.raises(snapshots.SnapshotError, match="not a snapshot's identity"):
        snapshots.dvc_file("0a070e32")
    assert Path(snapshots.DEFAULT_REMOTE).name == ".dvc-storage"


def test_a_remote_that_refuses_fails_the_snapshot(staged, tmp_path):
    lake, folder, _, _ = staged
    blocked = tmp_path / "remote"
    blocked.write_text("a file, not a folder")
    with pytest.raises(snapshots.SnapshotError, match="could not be written to|refused"):
        snapshots.push(lake, folder, {"DVC_REMOTE_URL": str(blocked)})
