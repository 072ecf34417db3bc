"""Hyperparameter tuning as rounds of trials that Airflow runs (``tune_model``): Optuna only proposes.

A study searches ``params.yaml``'s ``tune.space`` (parameters of the section of ``train.kind``) for the lowest
validation log-loss, on one training set built once and staged in the lake. Each round:

``ask``    the sampler (Optuna's TPE, seeded) proposes the round's trials: ``trials_per_round``, fewer when the
           budget (``trials``, ``minutes``) is nearly spent, none once it is; the first trial of the first round
           is params.yaml's own values (what the study's best is compared with)
``trial``  one proposal trained in one process through the model interface (``kinds``: its kind's ``fit``) and
           scored on the validation split; its result recorded in the lake, its run a child of the study's run
           in MLflow; no model version is registered
``tell``   the round's results given back to the study: a trial with no result (its task failed) is a failed
           trial, and the study goes on

The study lives in the lake, where every worker reaches it: its settings (``study.json``), each round's
proposals with the sampler's random state after them (``round-<r>.json``), each trial's result
(``trial-<n>.json``). ``ask`` rebuilds the study from them: the recorded trials added to a new in-memory study,
the sampler's random state restored, so the proposals are those of one Optuna study asked and told in the same
order in one process with the same seed (``tests/unit/test_tune.py`` checks it). ``finish`` writes the result
(``result.json``: the best trial, the defaults' trial, the trials table) and makes it the latest
(``tuning/latest.json``), which train_model's "latest study" reads.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import math
import time
from typing import Any

from .. import kinds
from ..core import layout, registry
from ..core.lake import Lake
from . import params as params_file

log = logging.getLogger(__name__)
STUDY, RESULT = "study.json", "result.json"
DIRECTION = "minimize"  # the validation log-loss
METRIC = "validation_logloss"


class StudyError(ValueError):
    """A search space or a study's record that cannot be used: names the parameter or the file."""


def _round(r: int) -> str:
    return f"round-{r:03d}.json"


def _trial(n: int) -> str:
    return f"trial-{n:05d}.json"


# the search space ------------------------------------------------------------------------------------------------
def space(tune: dict[str, Any], kind: str) -> dict[str, Any]:
    """Optuna's distributions of ``tune.space``: each name a parameter of ``kind``'s section of params.yaml,
    ``{low, high}`` (``log: true`` for a log scale; an integer parameter gets integers) inside the parameter's
    declared range, or ``{choices: [...]}`` of allowed values."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from ..core.config import check_value

    declared = params_file.SETTINGS[params_file.section(kind)]
    raw = tune.get("space") or {}
    if not raw:
        raise StudyError(f"params.yaml tune.space is empty: nothing to search for kind {kind!r}")
    out = {}
    for name, spec in sorted(raw.items()):  # one order wherever the space was read from (the lake sorts keys)
        where = f"params.yaml tune.space.{name}"
        if name not in declared:
            raise StudyError(f"{where}: {kind!r} has no parameter {name!r} (its parameters: {sorted(declared)})")
        if not isinstance(spec, dict) or not (
            set(spec) == {"choices"} or {"low", "high"} <= set(spec) <= {"low", "high", "log"}
        ):
            raise StudyError(f"{where} = {spec!r}: give {{low, high}} (and log: true) or {{choices: [...]}}")
        if "choices" in spec and not spec["choices"]:
            raise StudyError(f"{where}: choices is empty")
        try:
            for v in spec["choices"] if "choices" in spec else [spec["low"], spec["high"]]:
                check_value(declared[name], v, name)
        except ValueError as exc:
            raise StudyError(f"{where}: {exc}") from None
        if "choices" in spec:
            out[name] = CategoricalDistribution(list(spec["choices"]))
            continue
        low, high, log_scale = spec["low"], spec["high"], bool(spec.get("log", False))
        if not low < high or (log_scale and low <= 0):
            raise StudyError(f"{where}: low = {low}, high = {high}: low < high (and low > 0 on a log scale)")
        if declared[name].get("type") == "integer":
            out[name] = IntDistribution(int(low), int(high), log=log_scale)
        else:
            out[name] = FloatDistribution(float(low), float(high), log=log_scale)
    return out


def defaults(kind: str, dists: dict[str, Any]) -> dict[str, Any]:
    """params.yaml's values of the searched parameters: the first trial. Each must lie in its distribution (the
    study is rebuilt from its trials each round, and Optuna refuses a trial outside its space)."""
    section = params_file.section(kind)
    values = params_file.load()[section]
    out = {n: values[n] for n in dists}
    for n, d in dists.items():
        inside = out[n] in d.choices if hasattr(d, "choices") else d.low <= out[n] <= d.high
        if not inside:
            raise StudyError(
                f"params.yaml {section}.{n} = {out[n]!r} lies outside tune.space.{n}: the study's first trial is "
                "params.yaml's values; widen the space"
            )
    return out


# the study -------------------------------------------------------------------------------------------------------
def sampler(seed: int, n_startup_trials: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)


def sampler_state(s) -> list:
    """The sampler's random state (TPE's own and its start-up random sampler's), as JSON."""
    out = []
    for rng in (s._rng.rng, s._random_sampler._rng.rng):  # noqa: SLF001 - pinned optuna (test_tune checks it)
        name, keys, pos, has_gauss, cached = rng.get_state()
        out.append([name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)])
    return out


def restore_sampler(s, state: list) -> None:
    import numpy as np

    for lazy, (name, keys, pos, has_gauss, cached) in zip(
        (s._rng, s._random_sampler._rng),  # noqa: SLF001
        state,
        strict=True,
    ):
        lazy.rng.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _optuna_study(settings: dict[str, Any], trials: list[dict[str, Any]], state: list | None):
    """An in-memory Optuna study with the recorded trials, its sampler's random state restored."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = space(settings["tune"], settings["kind"])
    s = sampler(settings["tune"]["seed"], settings["tune"]["trials_per_round"])
    if state is not None:
        restore_sampler(s, state)
    study = optuna.create_study(direction=DIRECTION, sampler=s)
    for t in sorted(trials, key=lambda t: t["number"]):
        ok = t["state"] == "complete"
        study.add_trial(
            create_trial(
                params=t["params"],
                distributions=dists,
                value=t["value"] if ok else None,
                state=TrialState.COMPLETE if ok else TrialState.FAIL,
            )
        )
    return study, dists


def start(
    lake: Lake, study_id: str, kind: str, run_key: str, tune: dict[str, Any], rounds: int, num_boost_round: int
) -> dict[str, Any]:
    """The study's settings (each trial trains ``num_boost_round`` rounds where its kind boosts), recorded once (a
    retry finds them: the study is not started twice), with its run in MLflow (left open until ``finish``)."""
    folder = layout.tuning(study_id)
    if lake.exists(folder, STUDY):
        return lake.read_json(folder, STUDY)
    dists = space(tune, kind)  # a bad space fails here, before anything is recorded
    settings = {
        "study_id": study_id,
        "kind": kind,
        "training_set": run_key,
        "tune": tune,
        "rounds": rounds,
        "num_boost_round": num_boost_round,
        "defaults": defaults(kind, dists),
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    settings["run_id"] = registry.log_run(
        f"study {study_id}",
        {
            "kind": kind,
            "trials": tune["trials"],
            "minutes": tune["minutes"],
            "trials_per_round": tune["trials_per_round"],
            "seed": tune["seed"],
            "space": tune["space"],
            "training_set": run_key,
        },
        {},
        {"study_id": study_id, "mlops.kind": "tuning-study"},
        finished=False,
    )
    lake.write_json(settings, folder, STUDY)
    return settings


def recorded_trials(lake: Lake, study_id: str) -> list[dict[str, Any]]:
    folder = layout.tuning(study_id)
    return [lake.read_json(folder, f) for f in sorted(lake.ls(folder)) if f.startswith("trial-")]


def ask(lake: Lake, study_id: str, r: int) -> list[dict[str, Any]]:
    """Round ``r``'s proposals (``{"number", "params"}``), recorded with the sampler's state after them; a retry
    returns the recorded ones. None once the budget is spent or past the study's rounds."""
    folder = layout.tuning(study_id)
    if lake.exists(folder, _round(r)):
        return lake.read_json(folder, _round(r))["asked"]
    settings = lake.read_json(folder, STUDY)
    tune = settings["tune"]
    if r > 0 and not lake.exists(folder, _round(r - 1)):
        raise StudyError(f"study {study_id}: round {r} asked before round {r - 1}")
    previous = lake.read_json(folder, _round(r - 1)) if r > 0 else None
    asked_before = sum(len(lake.read_json(folder, _round(i))["asked"]) for i in range(r))
    elapsed_min = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(settings["started_at"])).total_seconds() / 60
    n = min(tune["trials_per_round"], tune["trials"] - asked_before)
    if r >= settings["rounds"] or n <= 0 or elapsed_min >= tune["minutes"]:
        why = "rounds" if r >= settings["rounds"] else ("trials" if n <= 0 else "minutes")
        log.info("study %s: round %d not asked: its budget of %s is spent", study_id, r, why)
        state = previous["sampler"] if previous else None
        lake.write_json({"asked": [], "sampler": state, "stopped": why}, folder, _round(r))
        return []
    trials = recorded_trials(lake, study_id)
    study, dists = _optuna_study(settings, trials, previous["sampler"] if previous else None)
    if r == 0:
        study.enqueue_trial(settings["defaults"])
    asked = []
    for _ in range(n):
        t = study.ask(dists)
        asked.append({"number": t.number, "params": t.params, "round": r})
    lake.write_json({"asked": asked, "sampler": sampler_state(study.sampler)}, folder, _round(r))
    return asked


def record_trial(lake: Lake, study_id: str, proposal: dict[str, Any], value: float | None, **extra: Any) -> dict:
    """A trial's result, recorded once it is known: complete with its ``value``, failed with None."""
    ok = value is not None and math.isfinite(value)
    done = proposal | {"state": "complete" if ok else "fail", "value": float(value) if ok else None} | extra
    lake.write_json(done, layout.tuning(study_id), _trial(int(proposal["number"])))
    return done


def _fit(module, train, validation, spec, values: dict[str, Any], num_boost_round: int):
    extra = (
        {"num_boost_round": num_boost_round} if "num_boost_round" in inspect.signature(module.fit).parameters else {}
    )
    return module.fit(train, validation, spec, values, **extra)


def trial(lake: Lake, study_id: str, proposal: dict[str, Any]) -> dict[str, Any]:
    """Train one proposal on the study's training set, score it on the validation split, record it (the lake and
    a child run in MLflow). An error is recorded as the trial's failure and raised: the trial fails alone."""
    import pandas as pd

    from ..core.metrics import metrics

    folder = layout.tuning(study_id)
    settings = lake.read_json(folder, STUDY)
    kind, number = settings["kind"], int(proposal["number"])
    values = params_file.load()[params_file.section(kind)] | proposal["params"]
    t0 = time.monotonic()
    try:
        ts = layout.training(settings["training_set"])
        meta = lake.read_json(ts, layout.TRAINING_SPEC)
        train = pd.concat(
            [lake.read_parquet(ts, *layout.training_shard(i)) for i in range(meta["shards"])], ignore_index=True
        )
        validation = lake.read_parquet(ts, layout.TRAINING_VALIDATION)
        spec = kinds.spec_of(meta["spec"])
        model = _fit(kinds.kind(kind), train, validation, spec, values, settings["num_boost_round"])
        m = metrics(validation[spec.label].to_numpy(), model.predict_encoded(validation[spec.columns]), "validation_")
    except Exception as exc:
        record_trial(lake, study_id, proposal, None, error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    value = float(m["validation_logloss"])
    run_id = registry.log_run(
        f"study {study_id} trial {number}",
        values,
        m,
        {"study_id": study_id, "trial": str(number), "mlops.kind": "tuning-trial"},
        parent_run_id=settings["run_id"],
    )
    return record_trial(
        lake, study_id, proposal, value, metrics=m, seconds=round(time.monotonic() - t0, 2), run_id=run_id
    )


def tell(lake: Lake, study_id: str, r: int) -> dict[str, Any]:
    """Round ``r``'s results: each proposal's recorded trial, or a failure recorded for a trial that left none
    (its task failed or was killed). The round's summary: complete and failed trials, the best so far."""
    folder = layout.tuning(study_id)
    if not lake.exists(folder, _round(r)):
        return {"round": r, "asked": 0, "complete": 0, "failed": 0}
    asked = lake.read_json(folder, _round(r))["asked"]
    done = {t["number"]: t for t in recorded_trials(lake, study_id)}
    for p in asked:
        if p["number"] not in done:
            error = "no result: its task failed before recording one"
            done[p["number"]] = record_trial(lake, study_id, p, None, error=error)
    mine = [done[p["number"]] for p in asked]
    best = best_trial(list(done.values()))
    return {
        "round": r,
        "asked": len(asked),
        "complete": sum(t["state"] == "complete" for t in mine),
        "failed": sum(t["state"] == "fail" for t in mine),
        "best": best and {"number": best["number"], "value": best["value"]},
    }


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [t for t in trials if t["state"] == "complete" and t["value"] is not None and math.isfinite(t["value"])]
    return min(ok, key=lambda t: (t["value"], t["number"])) if ok else None


def close(lake: Lake, study_id: str) -> str | None:
    """After the study's run, whatever its end: a study that started (its settings recorded) but has no result
    (a round's tasks failed for good, ``finish`` failed) gets its MLflow run ended as FAILED, so no run stays
    RUNNING for a study that is over; its id is returned. None when there is nothing to close: the study never
    started, or it finished (``finish`` ended its run). Reading errors raise (a retry closes it)."""
    folder = layout.tuning(study_id)
    if not lake.exists(folder, STUDY) or lake.exists(folder, RESULT):
        return None
    run_id = lake.read_json(folder, STUDY)["run_id"]
    registry.end_run(run_id, "FAILED")
    return run_id


def finish(lake: Lake, study_id: str) -> dict[str, Any]:
    """The study's result: its best trial, params.yaml's defaults' trial (the first) on the same training set and
    split, by how much the best beats them, and every trial; written to the lake (``result.json``, then
    ``tuning/latest.json``) and to the study's run in MLflow (ended). Raises when no trial completed: there is
    no result to take."""
    folder = layout.tuning(study_id)
    settings = lake.read_json(folder, STUDY)
    trials = sorted(recorded_trials(lake, study_id), key=lambda t: t["number"])
    best = best_trial(trials)
    if best is None:
        registry.end_run(settings["run_id"], "FAILED")
        raise StudyError(f"study {study_id}: none of its {len(trials)} trial(s) completed: no parameters to take")
    first = next((t for t in trials if t["number"] == 0), None)
    base = first["value"] if first and first["state"] == "complete" else None
    result = {
        "study_id": study_id,
        "kind": settings["kind"],
        "training_set": settings["training_set"],
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "metric": METRIC,
        "best": {
            "number": best["number"],
            "value": best["value"],
            "params": best["params"],
            "run_id": best.get("run_id"),
        },
        "defaults": {"params": settings["defaults"], "value": base},
        "improvement": None if base is None else base - best["value"],
        "margin": settings["tune"]["margin"],
        "trials": [
            {k: t.get(k) for k in ("number", "round", "state", "value", "params", "seconds", "error")} for t in trials
        ],
        "run_id": settings["run_id"],
    }
    result["beats_defaults"] = result["improvement"] is not None and result["improvement"] >= result["margin"]
    registry.log_to_run(
        settings["run_id"],
        {
            "best_validation_logloss": best["value"],
            "defaults_validation_logloss": base if base is not None else math.nan,
            "trials_complete": sum(t["state"] == "complete" for t in trials),
            "trials_failed": sum(t["state"] == "fail" for t in trials),
        },
        {},
        {"study_result.json": result},
    )
    registry.end_run(settings["run_id"])
    lake.write_json(result, folder, RESULT)
    lake.write_json(result, *layout.tuning_latest())
    return result


def latest(lake: Lake) -> dict[str, Any] | None:
    """The latest finished study's result, None when no study finished (the lake saying so: an error raises)."""
    folder, name = layout.tuning_latest()
    return lake.read_json(folder, name) if lake.exists(folder, name) else None


def latest_params(lake: Lake, kind: str) -> tuple[str, dict[str, Any]]:
    """(the study's id, its best parameters) of the latest study, for a run of ``kind``: a StudyError when none
    finished or it searched another kind (the run then fails: it asked for a study's parameters)."""
    result = latest(lake)
    if result is None:
        raise StudyError("parameters 'latest study': no tuning study has finished yet (run tune_model first)")
    if result["kind"] != kind:
        raise StudyError(
            f"parameters 'latest study': study {result['study_id']} searched {result['kind']!r}, this run trains {kind!r}"
        )
    return result["study_id"], dict(result["best"]["params"])
