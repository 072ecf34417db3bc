"""The rollout's settings (``include/config/deploy.yaml``): cheap to import (the DAG's form is made from them)."""

from __future__ import annotations

from typing import Any

from ..core.config import ConfigFile, YamlConfig

_STAGE = {
    "type": "object",
    "properties": {
        "share": {"type": "number", "minimum": 0, "maximum": 1},
        "min_hours": {"type": "number", "minimum": 0, "maximum": 24 * 30},
        "min_requests": {"type": "integer", "minimum": 0},
    },
    "required": ["share", "min_hours", "min_requests"],
    "additionalProperties": False,
}
_LIMITS = {
    "type": "object",
    "properties": {
        "latency_p99_ms": {"type": "number", "exclusiveMinimum": 0},
        "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "memory_mb": {"type": "number", "exclusiveMinimum": 0},
        "score_agreement": {"type": "number", "minimum": 0, "maximum": 1},
        "min_rescored": {"type": "integer", "minimum": 1},
    },
    "required": ["latency_p99_ms", "error_rate", "memory_mb", "score_agreement", "min_rescored"],
    "additionalProperties": False,
}
_APPROVAL = {
    "type": "object",
    "properties": {
        "required": {"type": "boolean"},
        "timeout_hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 24 * 30},
        # who may answer (user ids as the auth manager knows them; the simple auth manager: user names); empty:
        # every user the auth manager lets change the deployment DAG's runs (op and admin here)
        "approvers": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["required", "timeout_hours", "approvers"],
    "additionalProperties": False,
}


class DeployConfig(YamlConfig):
    """The ramp of stages, the operational limits each stage is judged by, the evidence a verdict needs and the
    tolerance it is judged by (``include/config/deploy.yaml``)."""

    FILE = ConfigFile("deploy.yaml")
    SETTINGS = {
        "stages": {"type": "array", "items": _STAGE},
        "limits": _LIMITS,
        "min_labelled": {"type": "integer", "minimum": 1},
        "min_days": {"type": "integer", "minimum": 1, "maximum": 60},
        "max_labelled": {"type": "integer", "minimum": 1},
        # negative: the challenger must be better by that much
        "max_logloss_increase": {"type": "number", "minimum": -1, "maximum": 1},
        "bootstrap": {"type": "integer", "minimum": 0, "maximum": 100000},  # 0: no interval on the AUC difference
        "min_slice_labelled": {"type": "integer", "minimum": 1},
        "max_slice_logloss_increase": {"type": "number", "minimum": -1, "maximum": 1},
        # not in deploy_model's form (an object): a run cannot turn the approval off
        "approval": _APPROVAL,
    }

    def _check(self, values: dict[str, Any], source: str) -> None:
        lo, hi = values["min_labelled"], values["max_labelled"]
        if lo > hi:
            raise ValueError(
                f"{source}: min_labelled = {lo} and max_labelled = {hi}: the evidence a decision needs must not "
                "exceed the most the rollout waits for (min_labelled <= max_labelled)"
            )
        shares = [s["share"] for s in values["stages"]]
        if not shares:
            raise ValueError(f"{source}: stages = []: the ramp needs at least one stage, the last with share 1.0")
        for i, (a, b) in enumerate(zip(shares, shares[1:], strict=False)):
            if b <= a:
                raise ValueError(
                    f"{source}: stages[{i + 1}].share = {b} after stages[{i}].share = {a}: the shares must rise"
                )
        if shares[-1] != 1.0:
            raise ValueError(
                f"{source}: stages[{len(shares) - 1}].share = {shares[-1]}: the last stage must serve every flight "
                "(share 1.0); promotion happens there"
            )
