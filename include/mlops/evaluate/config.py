"""The gate's thresholds (``include/config/gate.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from ..core.config import CONFIG_DIR, YamlConfig


class GateConfig(YamlConfig):
    """The gate's thresholds (``include/config/gate.yaml``)."""

    FILE = CONFIG_DIR / "gate.yaml"
