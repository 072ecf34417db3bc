"""The gate's thresholds (``include/config/gate.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from ..core.config import ConfigFile, YamlConfig


class GateConfig(YamlConfig):
    """The gate's thresholds (``include/config/gate.yaml``)."""

    FILE = ConfigFile("gate.yaml")
