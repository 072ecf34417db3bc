"""Triggers that wait in the triggerer (no worker slot held): ``LakeFileTrigger`` fires once a file exists in the
lake (the upstream drop's ``_SUCCESS`` marker), on ``file://`` or ``s3://`` alike.

The triggerer imports this module by its path (``mlops_airflow.blocks.triggers``): the plugins folder is on its path as
on every component's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class LakeFileTrigger(BaseTrigger):
    """Fires ``{"status": "ready", "path": ...}`` once ``parts`` (relative to the lake's root) exists, or
    ``{"status": "timeout"}`` once the wall-clock ``deadline`` (epoch seconds) has passed without it.

    The deadline is the trigger's own, absolute, so that a restarted triggerer keeps it and a run that is not
    driven by a triggerer at all (``dag.test()``, which runs the trigger inline and knows no defer timeout) still
    ends."""

    def __init__(self, parts: list[str], poke_interval: float = 60.0, deadline: float | None = None):
        super().__init__()
        self.parts = list(parts)
        self.poke_interval = float(poke_interval)
        self.deadline = None if deadline is None else float(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "mlops_airflow.blocks.triggers.LakeFileTrigger",
            {"parts": self.parts, "poke_interval": self.poke_interval, "deadline": self.deadline},
        )

    async def run(self):
        from .connections import get_lake

        lake = await asyncio.to_thread(get_lake)
        while True:
            if await asyncio.to_thread(lake.exists, *self.parts):
                yield TriggerEvent({"status": "ready", "path": lake.uri(*self.parts)})
                return
            left = None if self.deadline is None else self.deadline - time.time()
            if left is not None and left <= 0:
                yield TriggerEvent({"status": "timeout", "path": lake.uri(*self.parts)})
                return
            await asyncio.sleep(self.poke_interval if left is None else min(self.poke_interval, left))
