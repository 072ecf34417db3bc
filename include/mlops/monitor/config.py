"""Monitoring's settings (``include/config/monitoring.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from ..core.config import ConfigFile, YamlConfig


class MonitorConfig(YamlConfig):
    """Monitoring's window, thresholds and firing rule (``include/config/monitoring.yaml``)."""

    FILE = ConfigFile("monitoring.yaml")

    def thresholds(self, feature: str, kind: str) -> dict[str, float | None]:
        return {**(self.numeric if kind == "numeric" else self.categorical), **self.features.get(feature, {})}
