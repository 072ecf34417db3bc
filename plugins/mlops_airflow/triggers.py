"""Triggers that wait in the triggerer (no worker slot held): ``LakeFileTrigger`` fires once a file exists in the
lake (the upstream drop's ``_SUCCESS`` marker), on ``file://`` or ``s3://`` alike.

The triggerer imports this module by its path (``mlops_airflow.triggers``): the plugins folder is on its path as
on every component's."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class LakeFileTrigger(BaseTrigger):
    """Fires ``{"status": "ready", "path": ...}`` once ``parts`` (relative to the lake's root) exists."""

    def __init__(self, parts: list[str], poke_interval: float = 60.0):
        super().__init__()
        self.parts = list(parts)
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("mlops_airflow.triggers.LakeFileTrigger", {"parts": self.parts, "poke_interval": self.poke_interval})

    async def run(self):
        from .connections import get_lake

        lake = await asyncio.to_thread(get_lake)
        while True:
            if await asyncio.to_thread(lake.exists, *self.parts):
                yield TriggerEvent({"status": "ready", "path": lake.uri(*self.parts)})
                return
            await asyncio.sleep(self.poke_interval)
