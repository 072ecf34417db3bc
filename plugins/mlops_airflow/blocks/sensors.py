"""Sensors that hold no worker slot while they wait. Each DAG hands in what to look at (a function of its task
module), so these building blocks never import a DAG's task module."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator


class DropSensor(BaseSensorOperator):
    """Waits for a data set's upstream drop of the run's data date (``landing/<dataset>/date=D/_SUCCESS``);
    ``ready(dataset, context)`` is the look on a worker (``ingest_flights``' ``drop_is_ready``).

    It looks once on a worker (failing at once, with what to do, when the date was quarantined and no new drop
    came), then defers to ``LakeFileTrigger``: the waiting happens in the triggerer, and the worker slot is free
    until the marker appears or ``timeout`` passes.
    """

    template_fields: Sequence[str] = ("dataset",)
    ui_color = "#e6f0d8"

    def __init__(self, *, dataset: str, ready: Callable[[str, Any], bool], **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.ready = ready
        self.deferrable = True  # it always waits in the triggerer

    def poke(self, context) -> bool:
        return self.ready(self.dataset, context)

    def execute(self, context) -> None:
        if self.poke(context):
            return
        from include.mlops.core import layout

        from .defaults import batch_date
        from .triggers import LakeFileTrigger

        self.defer(
            trigger=LakeFileTrigger(
                [layout.landing(self.dataset, batch_date(context)), layout.SUCCESS],
                poke_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> None:
        if event and event.get("status") == "timeout":
            from airflow.sdk.exceptions import AirflowSensorTimeout

            raise AirflowSensorTimeout(f"no {self.dataset} drop within {self.timeout:.0f} s: {event.get('path')}")
        if not event or event.get("status") != "ready":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"waiting for the {self.dataset} drop ended without it: {event}")
        self.log.info("drop complete: %s", event.get("path"))


class DeferredPollSensor(BaseSensorOperator):
    """Looks on a worker (``poke``), and between looks waits deferred (a ``TimeDeltaTrigger`` in the triggerer),
    holding no slot. ``timeout`` counts from the task's first start, across the deferrals.

    Not a rescheduled sensor: with a short poke interval the scheduler can queue a rescheduled task again before
    it has processed the end of the previous poke, and then fails it as "changed externally" — which rolled a
    canary back without any evidence. A deferred task is resumed by its trigger's event instead. A look that
    returns a ``PokeReturnValue`` that is done ends the task with its value (XCom). ``look(context)`` is the look:
    True, False or a ``PokeReturnValue``.

    Each deferral lasts at least ``MIN_DEFERRAL_S``. A task that defers ends its try's process, and the executor
    reports that end as a success; Airflow 3.3's scheduler takes that report, when it comes after the trigger has
    fired and the task was queued again, for a task "changed externally" and fails the try (it forgives it only
    while the task is still scheduled). On a loaded machine two-second deferrals lost that race three tries
    running; ten seconds leave the report that much time to arrive first. A poke interval shorter than that (a
    test's, a demo's; the shipped intervals are longer) looks in the task's own process, every ``poke_interval``,
    for up to ``HOLD_S`` before it defers: a short wait costs neither a deferral nor a restart of the task."""

    MIN_DEFERRAL_S = 10.0
    HOLD_S = 60.0

    def __init__(self, *, look: Callable[[Any], Any], **kwargs):
        super().__init__(**kwargs)
        self.look = look
        self.deferrable = True

    def poke(self, context):
        return self.look(context)

    def execute(self, context, since: float | None = None):
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk import PokeReturnValue

        since = time.time() if since is None else since
        held = time.monotonic()
        while True:
            result = self.poke(context)
            if isinstance(result, PokeReturnValue) and result.is_done:
                return result.xcom_value
            if result is True:
                return None
            if self.timeout is not None and time.time() - since > self.timeout:
                from airflow.sdk.exceptions import AirflowSensorTimeout

                raise AirflowSensorTimeout(f"{self.task_id}: still waiting after {self.timeout:.0f} s")
            if self.poke_interval >= self.MIN_DEFERRAL_S or time.monotonic() - held >= self.HOLD_S:
                break
            time.sleep(self.poke_interval)
        self.defer(
            trigger=TimeDeltaTrigger(timedelta(seconds=max(self.poke_interval, self.MIN_DEFERRAL_S))),
            method_name="execute_complete",
            kwargs={"since": since},  # the first look's time, carried across the deferrals
        )

    def execute_complete(self, context, event: dict[str, Any] | None = None, since: float | None = None):
        return self.execute(context, since=since)


class EvidenceSensor(DeferredPollSensor):
    """``deploy_model``'s wait for canary evidence (``evidence_ready``); the decision (promote or roll back, with
    the comparison) is the task's return value (XCom)."""

    ui_color = "#fbe9d0"


class ReplayTurnSensor(DeferredPollSensor):
    """``simulate_upstream``'s wait, in a scheduled replay, for its day's turn (``replay_turn``): the day before
    ingested (and monitored, once a model serves), no retraining, monitoring or deployment in flight (a canary
    waiting for traffic excepted). A manual run does not wait."""

    ui_color = "#e8e0f4"
