"""The polling sensors' deferral (``DeferredPollSensor``, under ``wait_for_turn`` and ``wait_for_evidence``): each
wait between looks is a deferral of at least ``MIN_DEFERRAL_S``, so that the executor's report of the deferring
try's end reaches the scheduler before the trigger fires (a shorter one lost that race under load: the try was
failed as "changed externally"); the first look is immediate, and the timeout counts from it across deferrals."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from mlops_airflow.blocks.sensors import DeferredPollSensor, EvidenceSensor, ReplayTurnSensor


def _deferral(sensor, **kwargs) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({}, **kwargs)
    return deferred.value


def _seconds(deferred: TaskDeferred) -> float:
    """How long the deferral lasts: its trigger fires at a moment, set from now."""
    return (deferred.trigger.moment - datetime.now(UTC)).total_seconds()


@pytest.mark.parametrize("cls", [DeferredPollSensor, EvidenceSensor, ReplayTurnSensor])
def test_a_short_poke_interval_still_defers_for_the_minimum(cls):
    sensor = cls(task_id="wait", look=lambda ctx: False, poke_interval=2, timeout=600)
    deferred = _deferral(sensor)
    assert DeferredPollSensor.MIN_DEFERRAL_S == 10 and 9 < _seconds(deferred) <= 10
    assert deferred.method_name == "execute_complete" and deferred.kwargs["since"] <= time.time()


def test_a_longer_poke_interval_is_kept():
    sensor = DeferredPollSensor(task_id="wait", look=lambda ctx: False, poke_interval=600, timeout=3600)
    assert 599 < _seconds(_deferral(sensor)) <= 600


def test_the_first_look_is_immediate_and_its_answer_ends_the_wait():
    looks = []
    sensor = DeferredPollSensor(task_id="wait", look=lambda ctx: looks.append(ctx) or True, poke_interval=2)
    assert sensor.execute({"n": 1}) is None and looks == [{"n": 1}]
    done = DeferredPollSensor(
        task_id="wait", look=lambda ctx: PokeReturnValue(is_done=True, xcom_value={"decision": "promote"})
    )
    assert done.execute({}) == {"decision": "promote"}


def test_the_timeout_counts_from_the_first_look_across_deferrals():
    sensor = DeferredPollSensor(task_id="wait_for_turn", look=lambda ctx: False, poke_interval=2, timeout=60)
    since = _deferral(sensor).kwargs["since"]
    # resumed by the trigger, still within the timeout: it defers again, carrying the first look's time
    assert _deferral(sensor, since=since).kwargs["since"] == since
    with pytest.raises(AirflowSensorTimeout, match="wait_for_turn: still waiting after 60 s"):
        sensor.execute_complete({}, event=None, since=time.time() - 61)
