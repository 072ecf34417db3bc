"""The gate's thresholds (``include/config/gate.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from typing import Any

from ..core.config import ConfigFile, YamlConfig

_SHARE = {"type": "number", "minimum": 0, "maximum": 1}  # an AUC, a drop of one, a calibration error


class GateConfig(YamlConfig):
    """The gate's thresholds (``include/config/gate.yaml``); a new rule's threshold key is declared here too."""

    FILE = ConfigFile("gate.yaml")
    SETTINGS = {
        "min_auc": _SHARE,
        "max_auc_drop": _SHARE,
        "max_ece": _SHARE,
        "slice_columns": {"type": "array", "items": {"type": "string"}},
        "min_slice_rows": {"type": "integer", "minimum": 1},
        "max_slice_auc_drop": _SHARE,
        "min_auc_over_baseline": {"type": ["null", "number"], "minimum": -1, "maximum": 1},
    }

    def _check(self, values: dict[str, Any], source: str) -> None:
        from ..core.schema import check_features

        check_features(source, "slice_columns", values["slice_columns"])
