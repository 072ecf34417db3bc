"""The rollout's state in the lake (``deployments/rollout.json``): written by ``deploy`` (a canary starts, is
promoted or rolled back: ``deploy.transitions``, together with the registry's aliases), read by ``serve`` (how
much traffic the challenger gets) and ``monitor`` (no retraining trigger while a canary runs). The rollout records
the deploy_model run that watches a canary (``owner``), so that a run killed mid-canary leaves a canary that the
next run can resume, adopt or refuse by name (``claim``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import layout
from .lake import Lake


def current(lake: Lake) -> dict[str, Any] | None:
    """The current rollout, or None before the first; a lake that cannot be read raises (never "no rollout")."""
    return lake.read_json(*layout.rollout()) if lake.exists(*layout.rollout()) else None


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


# Who watches a canary. The deploy_model run that starts a canary records itself as its owner; a run killed
# mid-canary (marked failed, its worker lost for good) leaves the challenger serving its share with nobody
# watching. What a later run does with it is ``claim``'s.
ACTIVE_RUN_STATES = ("queued", "running")


class CanaryInTheWay(RuntimeError):
    """A canary that this run may neither resume nor replace; the message says what to do."""


def owned_by(rollout: dict[str, Any] | None, run_id: str) -> bool:
    """Whether run ``run_id`` watches the rollout (a rollout without an owner predates owners: anyone's)."""
    return bool(rollout) and rollout.get("owner") in (None, run_id)


def claim(rollout: dict[str, Any] | None, version: str, run_id: str, run_is_active: Callable[[str], bool]) -> str:
    """What run ``run_id``, about to start a canary of ``version``, does with the rollout it finds:

    ``start``   no canary runs: start one
    ``resume``  the canary of ``version`` this run started (a retry of its task): kept as it is, its clock and its
                evidence included
    ``adopt``   a canary of ``version`` whose run is over (``run_is_active(owner)`` is false, or it has no owner):
                this run watches it from now on, its clock and evidence kept

    Raises CanaryInTheWay, changing nothing, for a canary whose run is still queued or running (never two runs on
    one canary), and for a canary of another version whose run is over: the message names it and the form's
    options (watch it again, or end it) instead of replacing it unrecorded."""
    running = running_canary(rollout)
    if running is None:
        return "start"
    owner = rollout.get("owner")
    share = f"{float(rollout.get('canary_share', 0.0)):.0%}"
    if owner is not None and owner != run_id and run_is_active(owner):
        raise CanaryInTheWay(
            f"the canary of v{running} ({share} of flights) is watched by deploy_model run {owner}, which is "
            "still queued or running: wait for it to decide"
        )
    if running == str(version):
        return "resume" if owner == run_id else "adopt"
    raise CanaryInTheWay(
        f"a canary of v{running} ({share} of flights, started {rollout.get('started_at')} by "
        f"{'deploy_model run ' + owner if owner else 'an earlier deploy_model run'}, which is over) is still "
        f"serving and nobody watches it; v{version} cannot start another. Trigger deploy_model with version "
        f"{running} and action 'canary' to watch it again (its evidence so far is kept), or with action "
        f"'rollback' (take it out of service) or 'promote'; then deploy v{version}"
    )


def adopt(lake: Lake, rollout: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Make run ``run_id`` the owner of the running canary (``claim`` said ``adopt``): everything else is kept."""
    import datetime as dt

    adopted = rollout | {
        "owner": run_id,
        "adopted_from": rollout.get("owner"),
        "adopted_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    lake.write_json(adopted, *layout.rollout())
    return adopted


def shadowing(rollout: dict[str, Any] | None, challenger: str | None) -> bool:
    """Whether the challenger scores in the shadow: true while a canary of exactly that version runs, whatever its
    share (0.0, a shadow stage, included). The service then scores every flight the champion answers with the
    challenger too, logged apart (arm ``shadow``) and never returned."""
    return bool(
        rollout
        and challenger is not None
        and rollout.get("status") == "canary"
        and str(rollout.get("version")) == str(challenger)
    )


def past_champions(lake: Lake) -> list[str]:
    """The versions promoted by past rollouts, the most recent promotion first, each once (a lake that cannot be
    read raises: never "none")."""
    folder = layout.past_rollouts()
    records = [lake.read_json(folder, name) for name in lake.ls(folder)]
    promoted = sorted(
        (r for r in records if r.get("status") == "promoted"),
        key=lambda r: r.get("finished_at") or r.get("started_at") or "",
        reverse=True,
    )
    seen: list[str] = []
    for r in promoted:
        if str(r["version"]) not in seen:
            seen.append(str(r["version"]))
    return seen
