"""Task callables of ``tune_model``: Airflow context in, ``include.mlops.train.tune`` calls out (the study lives in
the lake; Optuna proposes, Airflow runs the trials)."""

from __future__ import annotations

import logging
import math
from typing import Any

from ..blocks.defaults import run_key

log = logging.getLogger(__name__)


def _study_id(context) -> str:
    return run_key(context)


def _refused(call, *args):
    """A search space or study that cannot be used fails the task for good (a retry would find the same)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.train import tune

    try:
        return call(*args)
    except tune.StudyError as exc:
        raise AirflowFailException(str(exc)) from None


def prepare(context) -> dict[str, Any]:
    """The study's training set, built once and staged in the lake (the run's window, train.kind's split), then
    the study's settings from the run's form over params.yaml's ``tune:`` (``tune.start``)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.core.config import check_settings
    from include.mlops.train import params as params_file
    from include.mlops.train import pipeline, tune

    from ..blocks.connections import get_lake
    from ..blocks.forms import known_conf

    known_conf(context)
    p, lake, study_id = context["params"], get_lake(), _study_id(context)
    base = params_file.load()
    settings = base["tune"] | {
        k: p[k] for k in ("trials", "minutes", "trials_per_round", "seed") if p.get(k) is not None
    }
    try:
        check_settings(settings, params_file.SETTINGS["tune"], "tune_model's form (tune: of params.yaml)")
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from None
    train = base["train"]
    kind = train["kind"]
    _refused(tune.space, settings, kind)  # before the training set is built
    try:
        meta = pipeline.build_training_set(
            lake,
            study_id,
            int(p.get("window_days") or train["window_days"]),
            1,
            end=p.get("end_date"),
            min_days=min(int(train["min_days"]), int(p.get("window_days") or train["window_days"])),
            kind=kind,
            shares=(float(train["validation_share"]), float(train["test_share"])),
        )
    except pipeline.NotEnoughData as exc:
        raise AirflowFailException(str(exc)) from None
    started = _refused(
        tune.start,
        lake,
        study_id,
        kind,
        study_id,
        settings,
        int(p["rounds"]),
        int(p.get("num_boost_round") or train["num_boost_round"]),
    )
    log.info("study %s of %s: %s on %s rows", study_id, kind, settings["space"], meta["rows"])
    return {
        "study_id": study_id,
        "kind": kind,
        "rows": meta["rows"],
        "run_id": started["run_id"],
        "end_date": meta["window"][-1],
    }


def ask(context, r: int) -> list[dict[str, Any]]:
    """Round ``r``'s proposals (none once the budget is spent): the mapped trials' inputs."""
    from include.mlops.train import tune

    from ..blocks.connections import get_lake

    return _refused(tune.ask, get_lake(), _study_id(context), r)


def trial(context, proposal: dict[str, Any]) -> dict[str, Any]:
    """One trial: trained, scored, recorded; an error fails this trial alone (no retries: ``tell`` records it)."""
    from include.mlops.train import tune

    from ..blocks.connections import get_lake

    done = tune.trial(get_lake(), _study_id(context), proposal)
    log.info("trial %s: validation log-loss %s with %s", proposal["number"], done["value"], proposal["params"])
    return {k: done[k] for k in ("number", "state", "value")}


def tell(context, r: int) -> dict[str, Any]:
    """Round ``r``'s results given back to the study, whatever the trials' states."""
    from include.mlops.train import tune

    from ..blocks.connections import get_lake

    summary = tune.tell(get_lake(), _study_id(context), r)
    log.info("round %d: %s", r, summary)
    return summary


def finish(context) -> dict[str, Any]:
    """The study's result in the lake and MLflow (``tune.finish``), and in Slack."""
    from include.mlops.train import tune

    from ..blocks.connections import get_lake
    from ..blocks.notifiers import notify

    result = _refused(tune.finish, get_lake(), _study_id(context))
    best, base = result["best"], result["defaults"]["value"]
    failed = sum(t["state"] == "fail" for t in result["trials"])
    better = (
        "params.yaml's defaults did not complete"
        if base is None
        else f"{result['improvement']:+.4f} against params.yaml's defaults ({base:.4f}): "
        + ("beats them by the margin" if result["beats_defaults"] else f"not by the margin {result['margin']}")
    )
    notify(
        context,
        "tuning",
        f"Study {result['study_id']}: best validation log-loss {best['value']:.4f} (trial {best['number']})",
        better,
        {
            "best parameters": ", ".join(f"{k}={_short(v)}" for k, v in sorted(best["params"].items())),
            "trials": f"{len(result['trials'])} ({failed} failed)",
            "train_model": "form choice 'latest study' trains with them",
        },
    )
    return {k: result[k] for k in ("study_id", "best", "improvement", "beats_defaults")}


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def close(context) -> str | None:
    """Runs whatever the study's end (trigger rule ``all_done``): a study that started without a result has its
    MLflow run ended as FAILED (``tune.close``); the run's state still shows the failure (``finish`` and what
    follows it are not successful)."""
    from include.mlops.train import tune

    from ..blocks.connections import get_lake

    closed = tune.close(get_lake(), _study_id(context))
    if closed:
        log.warning("study %s ended without a result: its MLflow run %s is marked FAILED", _study_id(context), closed)
    return closed


def then_train(context) -> bool:
    """The form's "Then train": True (the trigger runs) with ``train_model``'s end date and reason under XCom key
    ``train`` (the study's end date: the same window's last day); False ends the run here."""
    p = context["params"]
    if not p.get("train_after"):
        log.info("the study ends here (the form's 'Then train' is off)")
        return False
    prepared = context["ti"].xcom_pull(task_ids="prepare")
    finished = context["ti"].xcom_pull(task_ids="finish")
    reason = f"{p.get('reason') or 'manual'}; after tuning study {finished['study_id']}"
    context["ti"].xcom_push(key="train", value={"end_date": prepared["end_date"], "reason": reason})
    return True
