"""Monitoring's settings (``include/config/monitoring.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from typing import Any

from ..core.config import ConfigFile, YamlConfig

DAYS = {"type": "integer", "minimum": 1, "maximum": 366}
SHARE = {"type": "number", "minimum": 0, "maximum": 1}
# a statistic's threshold: an effect size (null: reported, not judged); a statistic without a declaration of its
# own (a new one in drift.py) takes this one
EFFECT = {"type": ["null", "number"], "minimum": 0}
COUNT = {"type": ["null", "integer"], "minimum": 0}  # records over which the service's log alerts (null: off)
BOUNDED = {"type": ["null", "number"], "minimum": 0, "maximum": 1}  # KS D and the JS distance lie in [0, 1]


# the prediction service's thresholds (monitoring.yaml's service: section), every one required
SERVICE = {
    "p99_ms": {"type": ["null", "number"], "exclusiveMinimum": 0},
    "p50_ms": {"type": ["null", "number"], "exclusiveMinimum": 0},
    "error_rate": {"type": ["null", "number"], "minimum": 0, "maximum": 1},
    "rejected_rate": {"type": ["null", "number"], "minimum": 0, "maximum": 1},
    "min_requests": {"type": "integer", "minimum": 0},
    "log_spilled": COUNT,
    "log_lake_failures": COUNT,
    "log_lost": COUNT,
    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
}
SERVICE_KEYS = list(SERVICE)

# training/serving skew (monitoring.yaml's skew: section, both required): the share of rows whose logged request
# field differs from the curated value at which a feature is skewed (null: reported, never judged; 0 would judge
# every feature skewed), and the rows compared before it is judged
SKEW = {
    "max_mismatch": {"type": ["null", "number"], "exclusiveMinimum": 0, "maximum": 1},
    "min_rows": {"type": "integer", "minimum": 1},
}


def _statistics(**own: dict) -> dict:
    return {"type": "object", "properties": own, "additionalProperties": EFFECT}


class MonitorConfig(YamlConfig):
    """Monitoring's window, thresholds and firing rule (``include/config/monitoring.yaml``)."""

    FILE = ConfigFile("monitoring.yaml")
    SETTINGS = {
        "window_days": DAYS,
        "ignore": {"type": "array", "items": {"type": "string"}},
        "numeric": _statistics(ks=BOUNDED),
        "categorical": _statistics(js=BOUNDED),
        "features": {"type": "object", "additionalProperties": _statistics(ks=BOUNDED, js=BOUNDED)},
        "missing_increase": {"type": "number", "minimum": 0},  # a rise of the missing share; above 1: never
        "min_drifted_features": {"type": "integer", "minimum": 1},
        "prediction": _statistics(ks=BOUNDED),
        "label_rate_change": {"type": ["null", "number"], "minimum": 0, "maximum": 1},
        "max_auc_drop": SHARE,
        "min_labelled": {"type": "integer", "minimum": 1},
        "consecutive_days": DAYS,
        "cooldown_days": {"type": "integer", "minimum": 0, "maximum": 366},
        "service": {
            "type": "object",
            "properties": SERVICE,
            "required": SERVICE_KEYS,
            "additionalProperties": False,
        },
        "skew": {"type": "object", "properties": SKEW, "required": list(SKEW), "additionalProperties": False},
        "tuning": {
            "type": "object",
            "properties": {"after_failed_retrains": {"type": ["null", "integer"], "minimum": 1, "maximum": 10}},
            "required": ["after_failed_retrains"],
            "additionalProperties": False,
        },
    }

    def _check(self, values: dict[str, Any], source: str) -> None:
        from ..core.schema import check_features

        check_features(source, "ignore", values["ignore"])
        check_features(source, "features", list(values["features"]))

    def thresholds(self, feature: str, kind: str) -> dict[str, float | None]:
        return {**(self.numeric if kind == "numeric" else self.categorical), **self.features.get(feature, {})}
