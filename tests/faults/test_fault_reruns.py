"""Retries and reruns: every step can run again on its own, and two runs of one date cannot corrupt each other.

The ingestion steps are the ones the DAG's tasks call (``include.mlops.ingest.ingestion``), each run with its own run
key, as Airflow runs them; ``register`` is the train_model task's step against the real (embedded) MLflow."""

from __future__ import annotations

import threading

import pytest

from include.mlops.core import registry
from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset
from include.mlops.ingest import ingestion
from include.mlops.simulate.upstream import Upstream, day_table

SETTINGS = Settings.from_env()
DATE = "2013-01-02"
CURATED = f"curated/flights/date={DATE}"


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def _run(lake, run: str, name: str = "flights") -> dict:
    """One run of a date: extract -> validate -> curate, each handing on what extract staged (its sha256)."""
    b = ingestion.batch(dataset(name), DATE, run)
    sha = ingestion.extract(lake, b)["sha256"]
    ingestion.check(lake, b, SETTINGS, sha)
    return ingestion.curate(lake, b, sha) | {"extracted": sha}


def test_curate_cleared_and_run_again_after_success(lake):
    """Kills: a cleared curate failing because its staging copy was gone."""
    Upstream(lake).publish(DATE, "flights")
    first = _run(lake, "manual__1")
    before = lake.read_bytes(CURATED, "part-00000.parquet")
    assert not lake.ls("staging", "flights")  # the run cleaned up after itself
    b = ingestion.batch(dataset("flights"), DATE, "manual__1")
    again = ingestion.curate(lake, b, first["extracted"])  # the cleared task, with extract's XCom
    assert again["rows"] == first["rows"] and lake.read_bytes(CURATED, "part-00000.parquet") == before
    ingestion.check(lake, b, SETTINGS, first["extracted"])  # validate cleared on its own works too


def test_a_cleared_step_never_curates_bytes_that_were_not_validated(lake):
    up = Upstream(lake)
    up.publish(DATE, "flights")
    first = _run(lake, "manual__1")
    before = lake.read_bytes(CURATED, "part-00000.parquet")
    up.publish(DATE, "flights", fault="out_of_range")  # upstream replaced the drop since
    b = ingestion.batch(dataset("flights"), DATE, "manual__1")
    with pytest.raises(ingestion.StaleDrop, match="changed since it was extracted"):
        ingestion.curate(lake, b, first["extracted"])
    with pytest.raises(ingestion.StaleDrop):
        ingestion.curate(lake, b, None)  # no record of what was extracted: refuse
    assert lake.read_bytes(CURATED, "part-00000.parquet") == before


def test_two_runs_of_one_date_at_once_do_not_corrupt_each_other(lake):
    """Kills: two runs racing on one staging folder (one of them failed in each of three tries)."""
    Upstream(lake).publish(DATE, "flights")
    expected = len(day_table("flights", DATE))
    errors: list[str] = []
    results: list[dict] = []
    barrier = threading.Barrier(2)

    def run(key):
        try:
            barrier.wait(10)
            for _ in range(3):
                results.append(_run(lake, key))
        except Exception as exc:  # noqa: BLE001 - every failure counts
            errors.append(f"{key}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(k,)) for k in ("scheduled__A", "manual__B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(results) == 6
    assert lake.ls(CURATED) == ["part-00000.parquet"]
    df = lake.read_parquet(CURATED, "part-00000.parquet")
    assert len(df) == expected and not df.duplicated(list(dataset("flights").key)).any()
    assert not lake.ls("staging", "flights")


def test_a_rejected_drop_in_one_run_leaves_the_other_run_a_clear_failure(lake):
    Upstream(lake).publish(DATE, "flights", fault="null_keys")
    a = ingestion.batch(dataset("flights"), DATE, "run_a")
    b = ingestion.batch(dataset("flights"), DATE, "run_b")
    sha_a, sha_b = ingestion.extract(lake, a)["sha256"], ingestion.extract(lake, b)["sha256"]
    from include.mlops.ingest.validation import BatchRejected

    with pytest.raises(BatchRejected):
        ingestion.check(lake, a, SETTINGS, sha_a)
    with pytest.raises(BatchRejected):  # its own staged copy: judged the same way
        ingestion.check(lake, b, SETTINGS, sha_b)
    assert lake.exists(f"quarantine/flights/date={DATE}", "flights.csv")
    assert not lake.exists(CURATED)


def test_register_retried_after_mlflow_accepted_the_version_registers_nothing_new(curated, monkeypatch):
    """Kills: a retry of register creating a second version for the same run."""
    from include.mlops.train import pipeline

    monkeypatch.setenv("MLOPS_MODEL_NAME", "register_retry")
    key = "register-retry"
    pipeline.build_training_set(curated, key, 7, 1, end="2013-02-07")
    pipeline.train(curated, key, 1, num_boost_round=20)
    first = pipeline.register(curated, key, params={"num_boost_round": 20}, reason="retry test")
    curated.rm(f"training/{key}", "registered.json")  # the task died after MLflow accepted the version
    again = pipeline.register(curated, key, params={"num_boost_round": 20}, reason="retry test")
    assert again["version"] == first["version"] and again["run_id"] == first["run_id"]
    assert [v["version"] for v in registry.versions()] == [first["version"]]
