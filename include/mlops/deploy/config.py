"""The canary's settings (``include/config/deploy.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from typing import Any

from ..core.config import ConfigFile, YamlConfig


class DeployConfig(YamlConfig):
    """The canary's share, the evidence it needs and the tolerance it is judged by (``include/config/deploy.yaml``)."""

    FILE = ConfigFile("deploy.yaml")
    SETTINGS = {
        # both arms must get flights: 0 leaves the challenger none, 1 the champion none (no comparison either way)
        "canary_share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "min_labelled_per_arm": {"type": "integer", "minimum": 1},
        "max_labelled_per_arm": {"type": "integer", "minimum": 1},
        # negative: the challenger must be better by that much
        "max_logloss_increase": {"type": "number", "minimum": -1, "maximum": 1},
        "bootstrap": {"type": "integer", "minimum": 0, "maximum": 100000},  # 0: no interval on the AUC difference
    }

    def _check(self, values: dict[str, Any], source: str) -> None:
        lo, hi = values["min_labelled_per_arm"], values["max_labelled_per_arm"]
        if lo > hi:
            raise ValueError(
                f"{source}: min_labelled_per_arm = {lo} and max_labelled_per_arm = {hi}: the evidence a decision "
                "needs must not exceed the most the canary waits for (min_labelled_per_arm <= max_labelled_per_arm)"
            )
