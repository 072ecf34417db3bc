"""The rollout's transitions. Each is one function that changes the registry's aliases (``core.registry``: which
version is the champion, which the challenger) and the rollout's state (``core.rollouts``: whether a canary runs,
on what share, watched by which run) together; nobody else writes either for a rollout.

``plan``      which path a run takes: a canary, or a promotion / roll-back now (no champion yet, or the version is
              the champion already: promoted directly)
``start``     a canary of a version: challenger := version, then the rollout (``canary``, its ramp at its first
              stage, its owner run);
              a retry resumes it, a run of the same version whose owner is over adopts it (``rollouts.claim``)
``advance``   the canary moves to its next stage (the rollout only: the aliases stay)
``approval``  the canary's approval asked or answered (``deploy.approval``; the rollout only)
``decide``    the canary ends on its evidence: champion := version (promote), the challenger alias removed, then
              the evidence report and the rollout's end
``promote``   a version promoted now (by hand, or the first model): champion := version, the challenger alias
              removed, then the rollout's record of it (when none is recorded or a canary was running)
``rollback``  a version rolled back now by hand (never the champion): its challenger alias removed, then its canary
              ends
``abandon``   the canary could not be decided: its challenger alias removed, then the rollout ends, promoted when
              ``decide`` had already made the version champion, else rolled back
``repair``    closes a rollout that a transition cut off between its two writes left saying "canary"

Order: the registry first, the rollout's state last. There is no transaction across MLflow and the lake; a crash
(the worker lost, the lake unreachable) can come between the two writes. The prediction service sends a canary
share to the challenger only while both say so (the rollout a canary of version v and the challenger alias on v:
``rollouts.canary_share``) and serves the champion alias otherwise, so what a cut-off transition leaves never sends
traffic where no transition meant it to go:

- ``start`` cut off: the challenger is v, the rollout runs no canary of v. v gets no traffic: the state the gate
  leaves after a pass. Nothing to repair: the retry, or the next run, starts the canary.
- a promotion cut off (``decide``, ``promote``, ``abandon`` after ``decide`` promoted): the champion is v, the
  challenger alias is gone (or still v), the rollout still says "canary of v". Every flight is served by v
  already; the record is stale (monitoring holds its retraining trigger, a new canary is refused as in the way).
- a roll-back cut off (``decide``, ``rollback``, ``abandon``): the challenger alias is gone, the champion is not v,
  the rollout still says "canary of v". v gets no traffic; the record is stale likewise.

Repair: every transition may run again from its start (an alias set or removed already is set or removed again),
and a retry of the task ends with the rollout's write. When no retry comes (the run killed, its retries spent),
``repair``, which ``start`` calls before it claims the rollout, finds the rollout saying "canary of v" while the
registry no longer backs it and closes it as the registry says: promoted when the champion is v, rolled back when
there is no challenger; its record says it was repaired. A canary whose challenger is another version (the gate
names a new challenger while a canary runs) is no cut-off transition and stays as it is (``rollouts.claim``
refuses it by name), and a canary watched by another run still queued or running is left to that run.

What a retry cannot restore: ``promote`` cut off after the champion was set records, when retried, the version
itself as the champion before it (the registry keeps no earlier alias).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import layout, registry, rollouts
from ..core.lake import Lake
from . import canary

log = logging.getLogger(__name__)


class Refused(RuntimeError):
    """A transition this run may not make (a retry would find the same): nothing was changed; the message says
    why and what to do."""


class NothingToAbandon(RuntimeError):
    """``abandon`` found no canary of the version that this run watches: nothing was changed; the message says
    why."""


@dataclass(frozen=True)
class Started:
    """A canary started (``step`` ``start``), resumed by its own run (``resume``) or adopted (``adopt``)."""

    step: str
    rollout: dict[str, Any]
    champion: str  # the champion's version, the canary's other arm


@dataclass(frozen=True)
class Ended:
    """A rollout's end: ``decision`` ``promote`` or ``rollback`` of ``version``."""

    version: str
    decision: str
    champion: str | None = None  # the champion after the transition (``decide``, ``promote``)
    before: str | None = None  # the champion before it (``promote``)
    report: str | None = None  # where the canary's evidence and decision were written (``decide``)


def _champion() -> str | None:
    champion = registry.alias_version("champion")
    return champion["version"] if champion else None


def _challenger() -> str | None:
    challenger = registry.alias_version("challenger")
    return challenger["version"] if challenger else None


def plan(action: str, version: str) -> str:
    """``canary``, ``promote`` or ``rollback``: the path a run for ``version`` takes. A registry that cannot answer
    raises: "no champion" is decided only on the registry saying so."""
    champion = _champion()
    if action in ("promote", "rollback"):
        return action
    if champion is None or champion == version:
        log.info("no champion to compare with: version %s is promoted directly", version)
        return "promote"
    return "canary"


def start(
    lake: Lake,
    version: str,
    stages: list[dict[str, Any]],
    data_date: Callable[[], dt.date | str],
    run_id: str,
    run_is_active: Callable[[str], bool],
    baseline: Callable[[], list | None] = lambda: None,
) -> Started:
    """Start the canary of ``version`` at the first of ``stages`` (``ramp``; ``baseline()``: the service's
    counters as it starts, asked only then), watched by run ``run_id``; its evidence is the
    flights of the days after ``data_date()`` (asked only when a canary starts: a resumed or adopted one keeps its
    own). A rollout a cut-off transition left is repaired first; a canary in the way (``rollouts.claim``;
    ``run_is_active`` says whether its owner run is still queued or running) is refused before any alias is set."""
    champion = _champion()
    if champion is None:
        raise Refused("the champion disappeared since plan: run deploy_model again")
    repair(lake, run_id, run_is_active)
    try:
        step = rollouts.claim(rollouts.current(lake), version, run_id, run_is_active)
    except rollouts.CanaryInTheWay as exc:
        raise Refused(str(exc)) from None
    registry.set_alias("challenger", version)
    if step == "start":
        rollout = canary.start(lake, version, champion, stages, data_date(), owner=run_id, baseline=baseline())
        return Started(step, rollout, champion)
    rollout = rollouts.current(lake)  # this run's own canary (a retry), or one whose run is over: watched from here
    if step == "adopt":
        rollout = rollouts.adopt(lake, rollout, run_id)
    log.info("%s the canary of v%s started %s", step, version, rollout["started_at"])
    return Started(step, rollout, champion)


def watched(lake: Lake, version: str, run_id: str) -> dict[str, Any]:
    """The running canary of ``version`` that run ``run_id`` watches; Refused if none runs or another run
    watches it."""
    rollout = rollouts.current(lake)
    if not rollout or rollout.get("status") != "canary" or str(rollout.get("version")) != version:
        raise Refused(f"no canary of v{version} is running (rollout: {rollout})")
    if not rollouts.owned_by(rollout, run_id):
        raise Refused(
            f"the canary of v{rollout['version']} is watched by deploy_model run {rollout['owner']} now, not this one"
        )
    return rollout


def advance(lake: Lake, version: str, run_id: str, why: str, sig, baseline: Callable[[], list | None]) -> dict:
    """The canary that run ``run_id`` watches moves to its next stage (``ramp``): the registry is not touched (the
    challenger stays the challenger); the service routes the new share from its next refresh."""
    rollout = watched(lake, version, run_id)
    if int(rollout["stage"]) + 1 >= len(rollout["stages"]):
        raise Refused(f"the canary of v{version} is at its last stage: it can only be promoted or rolled back")
    return canary.advance(lake, rollout, why, sig, baseline())


def approval(lake: Lake, version: str, run_id: str, state: dict[str, Any]) -> dict:
    """The approval of the canary that run ``run_id`` watches, asked or answered (``canary.approval``): the
    registry is not touched; the challenger keeps its share until ``decide``."""
    return canary.approval(lake, watched(lake, version, run_id), state)


def rebase(lake: Lake, version: str, run_id: str, baseline: list) -> dict:
    """The current stage's starting counters, taken late (``canary.rebase``)."""
    return canary.rebase(lake, watched(lake, version, run_id), baseline)


def decide(lake: Lake, version: str, run_id: str, result: dict[str, Any] | None) -> Ended:
    """End the canary that run ``run_id`` watches on the decision its evidence gave (``canary.look``): promote
    (champion := version) or roll back, the challenger alias removed; then the evidence report and the rollout's
    end, with ``result`` as its evidence."""
    rollout = watched(lake, version, run_id)
    if not result or result.get("decision") not in ("promote", "rollback"):
        raise Refused(f"no decision from wait_for_evidence: {result!r}")
    promote = result["decision"] == "promote"
    if promote:
        registry.set_alias("champion", rollout["version"])
    registry.delete_alias("challenger")
    lake.write_json(result, *layout.canary_evidence(rollout["version"]))
    canary.finish(lake, "promoted" if promote else "rolled_back", result)
    return Ended(
        version,
        result["decision"],
        champion=_champion(),
        report=lake.uri(*layout.canary_evidence(rollout["version"])),
    )


def promote(lake: Lake, version: str, data_date: Callable[[], dt.date | str], manual: bool) -> Ended:
    """Promote ``version`` now (``manual``: asked for by hand, not the first model or the champion again):
    champion := version, the challenger alias removed; then, when no rollout is recorded or a canary runs, the
    rollout records the promotion (share 0, the champion before it, ``data_date()`` asked only then)."""
    before = _champion()
    registry.set_alias("champion", version)
    registry.delete_alias("challenger")
    rollout = rollouts.current(lake)
    if rollout is None or rollout.get("status") == "canary":
        canary.start(lake, version, before, [{"share": 1.0, "min_hours": 0, "min_requests": 0}], data_date())
        canary.finish(lake, "promoted", {"manual": manual})
    return Ended(version, "promote", champion=version, before=before)


def rollback(lake: Lake, version: str) -> Ended:
    """Roll ``version`` back now by hand: Refused for the champion; its challenger alias removed, then its canary,
    if one runs, ends rolled back."""
    if _champion() == version:
        raise Refused(f"v{version} is the champion: promote another version instead of rolling back")
    if _challenger() == version:
        registry.delete_alias("challenger")
    rollout = rollouts.current(lake)
    if rollout and rollout.get("status") == "canary" and str(rollout.get("version")) == version:
        canary.finish(lake, "rolled_back", {"manual": True})
    return Ended(version, "rollback")


def abandon(lake: Lake, version: str, run_id: str) -> Ended:
    """The canary of ``version`` that run ``run_id`` watches could not be decided: take the challenger out of
    service (fail closed), unless ``decide`` had already made it the champion, in which case the rollout is
    closed as such. NothingToAbandon when no canary of the version runs or another run watches it."""
    rollout = rollouts.current(lake)
    if not (rollout and rollout.get("status") == "canary" and str(rollout.get("version")) == version):
        raise NothingToAbandon(f"no canary of v{version} is running: nothing to take out of service")
    if not rollouts.owned_by(rollout, run_id):  # another run adopted it and decides it
        owner = rollout["owner"]
        raise NothingToAbandon(f"the canary of v{version} is watched by deploy_model run {owner}: it decides")
    promoted = _champion() == version
    if _challenger() == version:
        registry.delete_alias("challenger")
    canary.finish(
        lake,
        "promoted" if promoted else "rolled_back",
        {"why": "deploy_model failed before it could decide on evidence"},
    )
    return Ended(version, "promote" if promoted else "rollback")


def repair(lake: Lake, run_id: str, run_is_active: Callable[[str], bool]) -> dict[str, Any] | None:
    """Close a rollout that says "canary of v" while the registry no longer backs it (the challenger is not v): a
    promotion or a roll-back cut off between the registry's write and the rollout's. Closed as the registry says,
    promoted when the champion is v, rolled back when there is no challenger; the rollout as closed is returned.
    None, changing nothing, for any other rollout: none, no canary, a canary the registry backs, a canary whose
    challenger is another version, a canary watched by another run still queued or running (``run_is_active``)."""
    rollout = rollouts.current(lake)
    version = rollouts.running_canary(rollout)
    if version is None:
        return None
    owner = rollout.get("owner")
    if owner is not None and owner != run_id and run_is_active(owner):
        return None  # its own run ends it
    challenger = _challenger()
    if challenger == version:
        return None  # a canary: the registry backs it
    if _champion() == version:
        status, done = "promoted", "promoted"
    elif challenger is None:
        status, done = "rolled_back", "rolled back"
    else:
        return None  # the challenger is another version: no cut-off transition of ours
    why = (
        f"closed by deploy_model run {run_id}: the registry had v{version} {done} already (a transition cut off "
        "before the rollout's write)"
    )
    log.warning("the rollout of v%s said canary: %s", version, why)
    return canary.finish(lake, status, {"why": why, "repaired": True})
