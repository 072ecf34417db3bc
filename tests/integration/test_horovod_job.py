"""Real Horovod jobs (Gloo, worker processes on this host) training LightGBM data-parallel."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import lightgbm as lgb
import numpy as np
import psutil
import pytest

from include.mlops.core import frame
from include.mlops.core.metrics import metrics
from include.mlops.kinds import lightgbm as lgbm
from include.mlops.train import features as F
from include.mlops.train.distributed import Job, write_training_set
from include.mlops.train.launch import TrainingJobError, run_job
from include.mlops.train.params import load as load_params

HELPERS = str(Path(__file__).resolve().parents[1] / "helpers")
ROUNDS = 150


@pytest.fixture(scope="module")
def training_set(curated_lake):
    fl, we, _ = frame.load_window(curated_lake, "2013-02-11", 42)
    ts = F.build(fl, we)
    write_training_set(curated_lake, "training/test-2w", ts, shards=2)
    return ts


def _job(lake, tmp_path, **kw) -> Job:
    return Job(
        lake_url=lake.url,
        training_set="training/test-2w",
        out_dir=str(tmp_path / "job"),
        workers=2,
        num_boost_round=ROUNDS,
        timeout_s=120,
        **kw,
    )


def test_two_workers_match_a_single_process(curated_lake, training_set, tmp_path):
    res = run_job(_job(curated_lake, tmp_path, storage_options={"secret": "s3cr3t-value"}))
    for f in ("job.json", "job.log", "result.json"):  # lake credentials reach the ranks, never the disk
        assert "s3cr3t-value" not in (tmp_path / "job" / f).read_text()
    assert [r["rank"] for r in res.ranks] == [0, 1]
    assert res.ranks[0]["machines"] == res.ranks[1]["machines"] and len(res.ranks[0]["machines"]) == 2
    assert sum(r["rows"] for r in res.ranks) == len(training_set.part("train"))  # each rank its own shard
    dist = lgb.Booster(model_file=str(res.model_path))
    assert dist.num_trees() == ROUNDS

    cols, cat = training_set.spec.columns, training_set.spec.categorical
    single = lgbm.train_single(
        training_set.part("train"),
        training_set.part("validation"),
        cols,
        cat,
        lgbm.params(load_params()["lgbm"], threads=2),
        ROUNDS,
    )
    test = training_set.part("test")
    p_dist, p_single = dist.predict(test[cols]), single.predict(test[cols])
    auc_dist = metrics(test["label"], p_dist)["auc"]
    auc_single = metrics(test["label"], p_single)["auc"]
    corr = float(np.corrcoef(p_dist, p_single)[0, 1])
    print(
        f"test AUC: 2 Horovod workers {auc_dist:.4f}, single process {auc_single:.4f}, "
        f"prediction correlation {corr:.4f}, {len(test)} test flights"
    )
    assert abs(auc_dist - auc_single) < 0.005
    assert auc_single > 0.6


def _assert_nothing_left(tmp_path, err: TrainingJobError):
    out = tmp_path / "job"
    assert not (out / "model.txt").exists() and not (out / "model.txt.partial").exists()
    me = psutil.Process()
    assert not [c for c in me.children(recursive=True) if "include.mlops.train" in " ".join(c.cmdline())]
    for state in err.ranks.values():  # every LightGBM / rendezvous port is closed again
        for peer in state.get("machines", []):
            host, port = peer.rsplit(":", 1)
            with socket.socket() as s:
                assert s.connect_ex((host, int(port))) != 0, f"{peer} still listening"


def test_a_failing_rank_ends_the_job_naming_it(curated_lake, training_set, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HELPERS, os.environ.get("PYTHONPATH", "")]))
    job = _job(curated_lake, tmp_path, fn="faulty_ranks:raise_on_rank1")
    job.timeout_s = 90
    with pytest.raises(
        TrainingJobError, match=r"rank 1 \(host localhost\) failed in phase '\w+': ValueError: injected fault"
    ) as err:
        run_job(job)
    _assert_nothing_left(tmp_path, err.value)


def test_a_hanging_rank_is_cut_off_by_the_timeout_naming_it(curated_lake, training_set, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HELPERS, os.environ.get("PYTHONPATH", "")]))
    job = _job(curated_lake, tmp_path, fn="faulty_ranks:hang_on_rank1")
    job.timeout_s = 25
    with pytest.raises(
        TrainingJobError, match=r"timed out after 25 s: rank 1 \(host localhost\) stuck in phase 'initialized'"
    ) as err:
        run_job(job)
    _assert_nothing_left(tmp_path, err.value)
