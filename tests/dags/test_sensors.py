"""The polling sensors (``DeferredPollSensor``, under ``wait_for_turn`` and ``wait_for_evidence``): each wait between
looks that defers lasts at least ``MIN_DEFERRAL_S``, so that the executor's report of the deferring try's end
reaches the scheduler before the trigger fires (a shorter one lost that race under load: the try was failed as
"changed externally"); a poke interval shorter than that looks in the task's process for up to ``HOLD_S`` first;
the first look is immediate, and the timeout counts from it across deferrals."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from mlops_airflow.blocks import sensors
from mlops_airflow.blocks.sensors import DeferredPollSensor, EvidenceSensor, ReplayTurnSensor


class Clock:
    """``time.sleep`` and ``time.monotonic`` as the sensor sees them: a sleep only moves the clock."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def sleep(self, s):
        self.slept.append(s)
        self.now += s

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(sensors.time, "sleep", c.sleep)
    monkeypatch.setattr(sensors.time, "monotonic", c.monotonic)
    return c


def looks(*answers):
    """A look answering ``answers`` in turn (the last one from then on), counting the looks."""
    seen = []

    def look(context):
        seen.append(context)
        return answers[min(len(seen), len(answers)) - 1]

    return look, seen


def _deferral(sensor, **kwargs) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({}, **kwargs)
    return deferred.value


def _seconds(deferred: TaskDeferred) -> float:
    """How long the deferral lasts: its trigger fires at a moment, set from now."""
    return (deferred.trigger.moment - datetime.now(UTC)).total_seconds()


@pytest.mark.parametrize("cls", [DeferredPollSensor, EvidenceSensor, ReplayTurnSensor])
def test_a_short_poke_interval_looks_in_process_then_defers_for_the_minimum(cls, clock):
    look, seen = looks(False)
    sensor = cls(task_id="wait", look=look, poke_interval=2, timeout=600)
    deferred = _deferral(sensor)
    # every 2 s for the hold's 60 s (31 looks, 30 sleeps), then one deferral of 10 s, not of 2
    assert len(seen) == 31 and clock.slept == [2] * 30
    assert DeferredPollSensor.MIN_DEFERRAL_S == 10 and 9 < _seconds(deferred) <= 10
    assert deferred.method_name == "execute_complete" and deferred.kwargs["since"] <= time.time()


def test_a_short_wait_ends_in_process_without_a_deferral(clock):
    look, seen = looks(False, False, True)
    sensor = DeferredPollSensor(task_id="wait", look=look, poke_interval=2, timeout=600)
    assert sensor.execute({}) is None and len(seen) == 3 and clock.slept == [2, 2]


def test_a_poke_interval_of_the_minimum_or_more_defers_at_once(clock):
    for interval in (10, 600):
        look, seen = looks(False)
        sensor = DeferredPollSensor(task_id="wait", look=look, poke_interval=interval, timeout=3600)
        assert interval - 1 < _seconds(_deferral(sensor)) <= interval
        assert len(seen) == 1 and clock.slept == []


def test_the_first_look_is_immediate_and_its_answer_ends_the_wait(clock):
    look, seen = looks(True)
    sensor = DeferredPollSensor(task_id="wait", look=look, poke_interval=2)
    assert sensor.execute({"n": 1}) is None and seen == [{"n": 1}] and clock.slept == []
    done = DeferredPollSensor(
        task_id="wait", look=lambda ctx: PokeReturnValue(is_done=True, xcom_value={"decision": "promote"})
    )
    assert done.execute({}) == {"decision": "promote"}


def test_the_timeout_counts_from_the_first_look_across_deferrals(clock):
    look, _ = looks(False)
    sensor = DeferredPollSensor(task_id="wait_for_turn", look=look, poke_interval=20, timeout=60)
    since = _deferral(sensor).kwargs["since"]
    # resumed by the trigger, still within the timeout: it defers again, carrying the first look's time
    assert _deferral(sensor, since=since).kwargs["since"] == since
    with pytest.raises(AirflowSensorTimeout, match="wait_for_turn: still waiting after 60 s"):
        sensor.execute_complete({}, event=None, since=time.time() - 61)
