"""The rollout's state in the lake (``deployments/rollout.json``): written by ``deploy`` (a canary starts, is
promoted or rolled back), read by ``serve`` (how much traffic the challenger gets) and ``monitor`` (no retraining
trigger while a canary runs)."""

from __future__ import annotations

from typing import Any

from . import layout
from .lake import Lake


def current(lake: Lake) -> dict[str, Any] | None:
    """The current rollout, or None before the first; a lake that cannot be read raises (never "no rollout")."""
    return lake.read_json(*layout.ROLLOUT) if lake.exists(*layout.ROLLOUT) else None


def canary_share(rollout: dict[str, Any] | None, challenger: str | None) -> float:
    """The challenger's share of traffic: the rollout's, while a canary of exactly that version runs; else 0."""
    if (
        not rollout
        or challenger is None
        or rollout.get("status") != "canary"
        or str(rollout.get("version")) != str(challenger)
    ):
        return 0.0
    return float(rollout.get("canary_share", 0.0))


def running_canary(rollout: dict[str, Any] | None) -> str | None:
    """The version of the canary that is running, if one is."""
    return str(rollout["version"]) if rollout and rollout.get("status") == "canary" else None
