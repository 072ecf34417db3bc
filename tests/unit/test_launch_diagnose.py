"""Naming the rank and host that failed or hung, from the status lines the ranks print into the job log.

Across hosts a rank's disk is not the launcher's: what the launcher knows of a remote rank is what Horovod forwarded
from its standard output (``[rank]<stdout>:`` prefixed lines). These tests write such logs by hand.
"""

from __future__ import annotations

import json

import pytest

from include.mlops.train.distributed import STATUS_MARK, _Status
from include.mlops.train.launch import _rank_states, diagnose, planned_hosts


def _line(rank: int, host: str, phase: str, **extra) -> str:
    state = {"rank": rank, "pid": 100 + rank, "host": host, "phase": phase, "phases": {phase: 1.0}, **extra}
    return f"[{rank}]<stdout>:{STATUS_MARK}{json.dumps(state)}\n"


def _log(tmp_path, *lines: str):
    (tmp_path / "job.log").write_text("".join(lines))
    return tmp_path


def test_the_last_status_line_of_each_rank_wins_and_a_torn_line_is_skipped(tmp_path):
    out = _log(
        tmp_path,
        "Checking ssh on all remote hosts.\n",
        _line(0, "worker1", "started"),
        _line(1, "worker2", "started"),
        _line(0, "worker1", "initialized"),
        f"[1]<stdout>:{STATUS_MARK}" + '{"rank": 1, "phase": "initiali\n',  # the rank was killed mid-line
    )
    states = _rank_states(out)
    assert {r: (s["host"], s["phase"]) for r, s in states.items()} == {
        0: ("worker1", "initialized"),
        1: ("worker2", "started"),
    }


def test_a_failed_rank_is_named_with_its_host(tmp_path):
    out = _log(
        tmp_path,
        _line(0, "worker1", "data_loaded"),
        _line(1, "worker2", "data_loaded", error="ValueError: shard 1 is corrupt"),
    )
    why = diagnose(out, 2, timed_out=False, timeout_s=60, hosts="worker1:1,worker2:1")
    assert why == "rank 1 (host worker2) failed in phase 'data_loaded': ValueError: shard 1 is corrupt"


def test_a_timeout_names_the_rank_behind_and_the_host_of_one_never_heard_from(tmp_path):
    out = _log(tmp_path, _line(0, "worker1", "rendezvous_done"), _line(1, "worker2", "bins_agreed"))
    why = diagnose(out, 3, timed_out=True, timeout_s=30, hosts="worker1:1,worker2:1,worker3:1")
    assert why == (
        "timed out after 30 s: rank 1 (host worker2) stuck in phase 'bins_agreed'; rank 2 (host worker3) never started"
    )


def test_a_rank_never_heard_from_is_named_by_the_host_it_was_given(tmp_path):
    out = _log(tmp_path, _line(0, "worker1", "done"))
    assert diagnose(out, 2, timed_out=False, timeout_s=30, hosts="worker1:1,worker2:1") == (
        "rank 1 (host worker2) never started"
    )
    assert diagnose(tmp_path / "nowhere", 1, timed_out=False, timeout_s=30) == "rank 0 (host localhost) never started"


@pytest.mark.parametrize(
    ("hosts", "workers", "expected"),
    [
        (None, 2, ["localhost", "localhost"]),
        ("a:2,b:1", 3, ["a", "a", "b"]),
        ("a:1,b:1", 1, ["a"]),
    ],
)
def test_ranks_fill_the_hosts_in_order(hosts, workers, expected):
    assert planned_hosts(hosts, workers) == expected


def test_a_rank_reports_the_host_horovod_named_it_by(monkeypatch, capsys):
    monkeypatch.setenv("HOROVOD_HOSTNAME", "worker2")
    status = _Status(1)
    status.phase("started")
    try:
        raise OSError("lake unreachable")
    except OSError as exc:
        status.failed(exc)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(STATUS_MARK)]
    last = json.loads(lines[-1][len(STATUS_MARK) :])
    assert len(lines) == 2 and last["host"] == "worker2" and last["error"] == "OSError: lake unreachable"


def test_a_job_that_ended_without_a_rank_s_error_names_the_ranks_that_did_not_finish(tmp_path):
    out = _log(tmp_path, _line(0, "worker1", "done"), _line(1, "worker2", "rendezvous_done"))
    assert diagnose(out, 2, timed_out=False, timeout_s=30, hosts="worker1:1,worker2:1") == (
        "the job exited with an error but no rank recorded one "
        "(rank 1 (host worker2) last heard in phase 'rendezvous_done')"
    )
    out = _log(tmp_path, _line(0, "worker1", "done"), _line(1, "worker2", "done"))
    assert diagnose(out, 2, timed_out=False, timeout_s=30).endswith("no rank recorded one (see the job log)")


def test_a_host_whose_ssh_port_does_not_answer_or_whose_name_does_not_resolve_is_named(monkeypatch):
    import socket

    from include.mlops.train import launch

    asked = []

    def connect(address, timeout):
        asked.append(address)
        raise TimeoutError("timed out")

    def resolve(host):
        if host == "typo":
            raise socket.gaierror(-2, "Name or service not known")
        return {"worker1": "127.0.0.1", "worker2": "10.9.9.12"}[host]

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(socket, "gethostbyname", resolve)
    assert launch.unreachable_hosts("worker1:2,worker2:1,typo:1") == {
        "worker2": ("unreachable: TimeoutError: timed out", True),  # a host down or a link cut: may come back
        "typo": ("does not resolve: [Errno -2] Name or service not known", False),  # a wrong host list: will not
    }
    assert asked == [("10.9.9.12", 22)]  # once per host, never this one
    assert launch.unreachable_hosts(None) == {}


@pytest.mark.parametrize(("transient", "retried"), [(True, True), (False, False)])
def test_the_train_task_retries_a_job_lost_to_a_host_and_fails_at_once_on_a_rank_s_own_error(
    monkeypatch, transient, retried
):
    """A timeout, a rank gone without a word or a host unreachable fails the try (Airflow retries it); a rank's own
    error fails the task (AirflowFailException: no retry)."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from include.mlops.train import launch, pipeline
    from mlops_airflow.blocks import connections, operators

    def job(*args, **kwargs):
        raise launch.TrainingJobError(
            "Horovod job with 2 worker(s) failed: host worker2 (rank 1) unreachable", {}, transient
        )

    monkeypatch.setattr(pipeline, "train", job)
    monkeypatch.setattr(connections, "get_lake", lambda: None)
    monkeypatch.setattr(connections, "worker_storage_options", lambda: {})
    op = operators.HorovodTrainOperator(task_id="train", run_key="r1", workers=2, hosts="worker1:1,worker2:1")
    with pytest.raises(AirflowException) as err:
        op.execute({})
    assert isinstance(err.value, AirflowFailException) is not retried
    assert "host worker2 (rank 1) unreachable" in str(err.value)
