"""The rollout's ramp: a state machine over the stages of ``deploy.yaml`` (shadow, then rising shares, the last
1.0), and the one function that decides each look's step (``step``). Pure: no lake, registry or service here.

A rollout's state (``core.rollouts``) carries its ramp: ``stages`` (the plan, copied when it starts: a changed
``deploy.yaml`` never moves a running rollout), ``stage`` (the index of the current one), ``canary_share`` (its
share: what the service routes by) and ``history`` (one entry per stage entered: ``entered_at``, and when it was
left, ``left_at``, ``outcome`` and ``why``).

Each look weighs two kinds of evidence:

- **quality**, the paired comparison over every labelled flight served during the rollout (``canary.compare``):
  both versions score the same flights, so it does not depend on the share. ``rollback`` (a clear harm), over
  every flight or on one slice of the gate's slice columns, ends the rollout at once, at any stage; ``promote`` is acted on only at the last stage; an inconclusive comparison at
  ``max_labelled`` flights rolls back (not shown to be safe).
- **operations**, the challenger's signals in the current stage (``deploy.signals``): the requests it scored,
  their p99 latency, its error rate, the service's memory and the agreement of its served scores with the same
  inputs rescored offline. A stage is judged once it has lasted ``min_hours`` and the challenger scored
  ``min_requests`` requests in it: a limit crossed rolls back; every signal present and within its limit
  advances it (or, at the last stage, lets a ``promote`` verdict promote); a missing signal holds it. The last
  stage (every flight) is entered only on a ``promote`` verdict: an inconclusive challenger never serves
  everyone while it waits for more evidence. Past the first share (entered from the shadow on its signals), a
  stage is raised only once the comparison is ready, and not while an inconclusive one leans towards harm (its
  mean difference beyond the tolerance): the share stays small while the evidence grows.

What comes first: harm on quality, then a crossed limit, then the rollout's time (``wait_hours`` since it
started: no decision by then rolls back), then the stage's own progress.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..core.schema import model

ACTIONS = ("hold", "advance", "promote", "rollback")


def stage_name(share: float) -> str:
    return "shadow" if share <= 0 else f"{share:.0%}"


def ramp_text(stages: list[dict[str, Any]]) -> str:
    """The ramp as a person reads it: ``shadow -> 5% -> 25% -> 100%``."""
    return " -> ".join(stage_name(s["share"]) for s in stages)


@dataclass(frozen=True)
class Signals:
    """The challenger's operational signals in the current stage; None: not known (the service did not answer,
    or no flight of the stage is known to curation yet). ``error``: why the service could not be read."""

    requests: int | None = None  # requests the challenger scored in the stage (answered or failed)
    p99_ms: float | None = None
    error_rate: float | None = None
    memory_mb: float | None = None
    agreement: float | None = None  # share of rescored flights whose served score equals the rescored one
    rescored: int = 0
    by_arm: dict[str, Any] = field(default_factory=dict)  # every arm's numbers, for the record
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Step:
    action: str  # one of ACTIONS
    why: str
    checks: list[str] = field(default_factory=list)  # each signal as judged, for the record


def hours_between(a: str, b: dt.datetime) -> float:
    return (b - dt.datetime.fromisoformat(a)).total_seconds() / 3600


def judge_stage(
    stage: dict[str, Any], limits: dict[str, Any], s: Signals, hours_in: float
) -> tuple[str, list[str], list[str]]:
    """The stage's state on its signals: ``breach`` (a limit crossed), ``ok`` (minimums met, every signal within
    its limit), ``hold`` (a minimum not met or a signal missing). Returns it with the reasons and the checks."""
    checks: list[str] = []
    if s.error:
        return "hold", [f"the service's signals could not be read: {s.error}"], checks
    waiting: list[str] = []
    if hours_in < stage["min_hours"]:
        waiting.append(f"{hours_in:.2f} of {stage['min_hours']:g} hours in the stage")
    n = s.requests
    if n is None:
        return "hold", ["no request count for the challenger in this stage"], checks
    if n < stage["min_requests"]:
        waiting.append(f"{n} of {stage['min_requests']} requests scored by the challenger in the stage")
        return "hold", waiting, checks
    breaches, missing = [], []
    for key, value, fmt, over in (
        ("latency_p99_ms", s.p99_ms, "p99 {:.1f} ms (limit {:g} ms)", lambda v, lim: v > lim),
        ("error_rate", s.error_rate, "error rate {:.2%} (limit {:.2%})", lambda v, lim: v > lim),
        ("memory_mb", s.memory_mb, "memory {:.0f} MB (limit {:g} MB)", lambda v, lim: v > lim),
    ):
        limit = limits[key]
        if value is None:
            missing.append(f"no {key.replace('_', ' ')} signal")
            continue
        checks.append(fmt.format(value, limit))
        if over(value, limit):
            breaches.append(fmt.format(value, limit))
    if s.rescored < limits["min_rescored"] or s.agreement is None:
        missing.append(f"{s.rescored} of {limits['min_rescored']} {model().rows} rescored offline")
    else:
        limit = limits["score_agreement"]
        text = f"served = rescored on {s.agreement:.2%} of {s.rescored} {model().rows} (limit {limit:.2%})"
        checks.append(text)
        if s.agreement < limits["score_agreement"]:
            breaches.append(text)
    if breaches:
        return "breach", breaches, checks
    if waiting or missing:
        return "hold", waiting + missing, checks
    return "ok", [], checks


def step(
    rollout: dict[str, Any],
    limits: dict[str, Any],
    signals: Signals,
    quality: dict[str, Any] | None,
    evidence: dict[str, Any],
    now: dt.datetime,
    wait_hours: float,
) -> Step:
    """This look's step for a running rollout. ``quality``: the paired comparison (``canary.compare``) or None
    (fewer labelled flights than a verdict needs); ``evidence``: ``canary.evidence``'s counts (``enough``: the
    cap reached)."""
    stages, i = rollout["stages"], int(rollout["stage"])
    stage, last = stages[i], i == len(stages) - 1
    name = stage_name(stage["share"])
    verdict = quality["decision"] if quality else None
    if verdict == "rollback":
        return Step("rollback", f"the paired comparison shows harm (at the {name} stage)")
    harmed = ((quality or {}).get("slices") or {}).get("harmed")
    if harmed:
        return Step("rollback", f"the paired comparison shows harm on {', '.join(harmed)} (at the {name} stage)")
    state, reasons, checks = judge_stage(
        stage, limits, signals, hours_between(rollout["history"][-1]["entered_at"], now)
    )
    if state == "breach":
        return Step("rollback", f"over its limits at the {name} stage: {'; '.join(reasons)}", checks)
    if verdict == "inconclusive" and evidence.get("enough"):
        return Step(
            "rollback",
            f"inconclusive at {evidence['labelled']} labelled {model().rows} (max_labelled): the challenger was not shown "
            "to be no worse than the champion",
            checks,
        )
    waited = hours_between(rollout["started_at"], now)
    if waited >= wait_hours:
        return Step(
            "rollback",
            f"no decision after {waited:.1f} hours (wait_hours {wait_hours:g}) at the {name} stage: "
            + ("; ".join(reasons) if reasons else f"the comparison is {verdict or 'not ready'}"),
            checks,
        )
    if state == "hold":
        return Step("hold", f"the {name} stage holds: {'; '.join(reasons)}", checks)
    leaning = _leans_to_harm(quality)
    if leaning and not last:
        return Step(
            "hold",
            f"the {name} stage passed its signals, but the paired comparison leans towards harm ({leaning}): no "
            "larger share until it says more",
            checks,
        )
    if not last and i + 1 == len(stages) - 1 and verdict != "promote":
        return Step(
            "hold",
            f"the {name} stage passed; the next serves all {model().rows}, and waits for the paired comparison to say "
            f"promote (it is {verdict or f'not ready: too few labelled {model().rows} or days'})",
            checks,
        )
    if quality is None and not last and stage["share"] > 0:
        return Step(
            "hold",
            f"the {name} stage passed its signals; a larger share waits for the paired comparison (too few "
            f"labelled {model().rows} or days so far: {evidence.get('labelled', 0)})",
            checks,
        )
    if not last:
        return Step("advance", f"the {name} stage passed: {'; '.join(checks)}", checks)
    if verdict == "promote" and leaning:
        return Step("hold", f"the last stage passed, but the paired comparison leans towards harm ({leaning})", checks)
    if verdict == "promote":
        return Step("promote", f"the last stage passed and the paired comparison says promote: {'; '.join(checks)}")
    return Step(
        "hold",
        f"the last stage passed; waiting for the comparison's verdict ({verdict or 'not enough labelled ' + model().rows})",
        checks,
    )


def _leans_to_harm(quality: dict[str, Any] | None) -> str | None:
    """An inconclusive comparison whose mean log-loss difference is already beyond the tolerance, or a slice
    judged (``canary.slice_comparison``) whose mean difference is beyond the slice tolerance and that is worse
    than the champion on its own 95 % interval (a slice's mean alone is noise: a thousand flights move it by a
    few hundredths), whatever the verdict over every flight: the evidence points at harm without showing it yet.
    None otherwise (no comparison, or one that does not lean that way)."""
    ll = (quality or {}).get("logloss")
    if not ll:
        return None
    if quality.get("decision") == "inconclusive" and ll["diff"] > ll["tolerance"]:
        lo, hi = ll["ci95"]
        return (
            f"log-loss difference {ll['diff']:+.4f} over the tolerance {ll['tolerance']:+.4f}, 95 % CI "
            f"[{lo:+.4f}, {hi:+.4f}]"
        )
    sl = quality.get("slices") or {}
    over = [r for r in sl.get("table", []) if "ci95" in r and r["diff"] > sl["tolerance"] and r["ci95"][0] > 0]
    if over:
        worst = over[0]  # the table is sorted by difference, the largest first
        return (
            f"on {worst['column']}={worst['value']} ({worst['rows']} {model().rows}) log-loss difference "
            f"{worst['diff']:+.4f} over the slice tolerance {sl['tolerance']:+.4f}, its 95 % CI "
            f"[{worst['ci95'][0]:+.4f}, {worst['ci95'][1]:+.4f}]"
            + (f", {len(over) - 1} more slice(s)" if len(over) > 1 else "")
        )
    return None


def entered(rollout: dict[str, Any], index: int, at: str, baseline: list | None) -> dict[str, Any]:
    """The rollout at stage ``index`` from ``at``: its share, the stage's entry in the history, the service's
    counters at its start (``baseline``: None when the service could not be read; the next look takes them)."""
    stages = rollout["stages"]
    return rollout | {
        "stage": index,
        "canary_share": float(stages[index]["share"]),
        "baseline": baseline,
        "history": [*rollout.get("history", []), {"stage": index, "share": stages[index]["share"], "entered_at": at}],
    }


def left(rollout: dict[str, Any], at: str, outcome: str, why: str, signals: Signals | None) -> dict[str, Any]:
    """The rollout with its current stage's history entry closed: when, how (``advance``, ``promote``,
    ``rollback``), why, and the signals it was left on."""
    history = [dict(h) for h in rollout.get("history", [])]
    if history and "left_at" not in history[-1]:
        history[-1] |= {"left_at": at, "outcome": outcome, "why": why}
        if signals is not None:
            history[-1]["signals"] = signals.as_dict()
    return rollout | {"history": history}
