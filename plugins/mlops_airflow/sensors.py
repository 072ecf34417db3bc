"""Sensors that hold no worker slot while they wait."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator


class DropSensor(BaseSensorOperator):
    """Waits for a data set's upstream drop of the run's data date (``landing/<dataset>/date=D/_SUCCESS``).

    It looks once on a worker (failing at once, with what to do, when the date was quarantined and no new drop
    came), then defers to ``LakeFileTrigger``: the waiting happens in the triggerer, and the worker slot is free
    until the marker appears or ``timeout`` passes.
    """

    template_fields: Sequence[str] = ("dataset",)
    ui_color = "#e6f0d8"

    def __init__(self, *, dataset: str, **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.deferrable = True  # it always waits in the triggerer

    def poke(self, context) -> bool:
        from .ingest_flights import drop_is_ready

        return drop_is_ready(self.dataset, context)

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


class EvidenceSensor(BaseSensorOperator):
    """``deploy_model``'s wait for canary evidence: looks on a worker (``evidence_ready``), and between looks
    waits deferred (a ``TimeDeltaTrigger`` of ``poke_interval`` in the triggerer), holding no slot.

    Not a rescheduled sensor: with a short poke interval the scheduler can queue a rescheduled task again before
    it has processed the end of the previous poke, and then fails it as "changed externally" — which rolled a
    canary back without any evidence. A deferred task is resumed by its trigger's event instead. The decision
    (promote or roll back, with the comparison) is the task's return value (XCom)."""

    ui_color = "#fbe9d0"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.deferrable = True

    def poke(self, context):
        from .deploy_model import evidence_ready

        return evidence_ready(context)

    def execute(self, context):
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk import PokeReturnValue

        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        if result is True:
            return None
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.poke_interval)), method_name="execute_complete")

    def execute_complete(self, context, event: dict[str, Any] | None = None):
        return self.execute(context)
