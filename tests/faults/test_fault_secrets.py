"""Secrets never reach a command line: a real 2-worker Horovod job runs with the secrets an Airflow task has in
its environment (AWS secret key, Fernet key, JWT secret, database URL, a Slack connection) and lake
credentials in its job; meanwhile every process's ``/proc/<pid>/cmdline`` is read again and again."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

import pytest
from curation import curate_days

from include.mlops.core import frame
from include.mlops.core.lake import Lake
from include.mlops.train import features as F
from include.mlops.train.distributed import Job, write_training_set
from include.mlops.train.launch import run_job


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    lake = Lake((tmp_path_factory.mktemp("secrets-lake") / "lake").as_uri())
    curate_days(lake, "2013-01-01", 6)
    fl, we, _ = frame.load_window(lake, "2013-01-06", 6)
    write_training_set(lake, "training/secrets", F.build(fl, we), shards=2)
    return lake


def _cmdlines() -> dict[int, str]:
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return out


def test_no_secret_on_any_command_line_or_in_any_file_during_a_real_job(small_lake, tmp_path, monkeypatch):
    """Kills: Horovod's launcher putting the task's whole environment on each worker's command line."""
    fake = {
        name: f"{name.lower()}-{secrets.token_hex(10)}"
        for name in ("AWS_SECRET_ACCESS_KEY", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")
    }
    db_password = "dbpw" + secrets.token_hex(8)
    slack_token = "xoxb" + secrets.token_hex(10)
    for k, v in fake.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"postgresql://airflow:{db_password}@db:5432/airflow")
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps({"conn_type": "slack", "password": slack_token}))
    lake_secret = "lakesecret" + secrets.token_hex(8)
    values = [*fake.values(), db_password, slack_token, lake_secret]

    seen: dict[int, str] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for pid, cmd in _cmdlines().items():
                if "horovod" in cmd or "include.mlops.train" in cmd or any(v in cmd for v in values):
                    seen[pid] = cmd
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    job = Job(
        lake_url=small_lake.url,
        training_set="training/secrets",
        out_dir=str(tmp_path / "job"),
        workers=2,
        num_boost_round=20,
        timeout_s=120,
        storage_options={"secret": lake_secret},
    )
    try:
        res = run_job(job)
    finally:
        stop.set()
        watcher.join(10)
    assert len(res.ranks) == 2
    workers = [c for c in seen.values() if "horovod.runner" in c or "run_task" in c]
    assert workers, f"the watcher never saw a worker's command line: {list(seen.values())[:5]}"
    leaks = {pid: cmd[:300] for pid, cmd in seen.items() if any(v in cmd for v in values)}
    assert not leaks, f"secrets on command lines: {leaks}"
    for f in Path(job.out_dir).rglob("*"):
        if f.is_file():
            text = f.read_text(errors="replace")
            assert not any(v in text for v in values), f"a secret in {f}"


def test_a_hosts_value_that_is_an_option_never_reaches_the_launcher(small_lake, tmp_path):
    """Kills: the hosts Param without a pattern (``-v:1`` got through)."""
    for hosts in ("-v:1", "node1:2 --gloo", "node1:2;rm", "node1", ":2"):
        job = Job(
            lake_url=small_lake.url,
            training_set="training/secrets",
            out_dir=str(tmp_path / "j"),
            workers=2,
            num_boost_round=5,
            timeout_s=30,
            hosts=hosts,
        )
        with pytest.raises(ValueError, match="not a Horovod host list"):
            run_job(job)
        assert not (tmp_path / "j" / "job.log").exists()  # refused before anything started


def test_the_hosts_param_of_train_model_has_a_pattern(dagbag):
    from airflow.sdk.definitions.param import Param

    dag = dagbag.get_dag("train_model")
    param = dag.params.get_param("hosts")
    assert isinstance(param, Param)
    with pytest.raises(Exception, match="does not match"):
        param.resolve("-v:1")
    assert param.resolve("node1:4,node2:4") == "node1:4,node2:4"
    assert param.resolve(None) is None
