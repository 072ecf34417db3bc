"""Task callables of ``train_model``: Airflow context in, ``include.mlops.train.pipeline`` calls out."""

from __future__ import annotations

import logging
from typing import Any

from ..blocks.defaults import run_key

log = logging.getLogger(__name__)


def _training_dates(lake, end) -> list:
    """The curated days of the model's data set up to ``end``; none (or too few in the window, for
    ``build_training_set``) fails the task at once, naming the data set and the days searched: a retry finds no
    more data, and a run that trains nothing must not end green."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.train import pipeline

    try:
        return pipeline.training_dates(lake, end)
    except pipeline.NotEnoughData as exc:
        raise AirflowFailException(str(exc)) from None


def _scored() -> str:
    """The data set the model scores (its declaration)."""
    from include.mlops.core.schema import model

    return model().dataset


def should_train(context: dict[str, Any]) -> bool:
    """Enough curated days, and a reason: a run started by new curated data (the Asset schedule) trains only
    while there is no champion yet; later models come from monitoring (drift, decay) or a person. The run's
    parameters and gate thresholds are checked first: one out of its range fails the run here, before the lake,
    the Horovod job or the registry see it."""
    from include.mlops.core import registry
    from include.mlops.evaluate.config import GateConfig

    from ..blocks.connections import get_lake
    from ..blocks.forms import known_conf, run_config, run_params

    known_conf(context)
    p = context["params"]
    run_params(p)
    run_config(GateConfig, p, prefix="gate_")
    dates = _training_dates(get_lake(), p.get("end_date"))  # none at all fails the run, naming the data set
    if len(dates) < int(p["min_days"]):
        # a designed wait (the Asset schedule starts a run per curated day): the next curated day tries again
        log.info("%d curated day(s) of %s (need %d): skipping this run", len(dates), _scored(), p["min_days"])
        return False
    run_type = getattr(context["dag_run"], "run_type", "")
    if str(getattr(run_type, "value", run_type)) == "asset_triggered":
        champion = registry.alias_version("champion")
        if champion is not None:
            log.info(
                "new curated data, but champion v%s serves and monitoring decides on retraining: skipping this run",
                champion["version"],
            )
            return False
    log.info("%d curated day(s) of %s: training (%s)", len(dates), _scored(), p.get("reason"))
    return True


def build_training_set(context: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.train import pipeline

    from ..blocks.connections import get_lake

    p = context["params"]
    try:
        meta = pipeline.build_training_set(
            get_lake(),
            run_key(context),
            int(p["window_days"]),
            int(p["workers"]),
            end=p.get("end_date"),
            min_days=min(int(p["min_days"]), int(p["window_days"])),
            kind=str(p["kind"]),
            shares=(float(p["validation_share"]), float(p["test_share"])),
        )
    except pipeline.NotEnoughData as exc:  # the window holds too few days: a retry finds no more
        raise AirflowFailException(str(exc)) from None
    source, values = model_values(context)
    out = {k: meta[k] for k in ("fingerprint", "rows", "window", "days", "shards")}
    return out | {"model_params": values, "parameters": source}


def model_values(context: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(where they come from, the run's values of its kind's parameters): the form's (params.yaml's defaults),
    or the latest tuning study's best over them (``parameters``: "latest study"; "latest study if better": only
    when the study beat the defaults by params.yaml's ``tune.margin``, monitoring's retraining). Read when the run
    starts: a study finished after the DAG was parsed counts. Asked for and missing (no study, another kind) fails
    the run for good."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.train import tune
    from include.mlops.train.params import SETTINGS, section

    from ..blocks.connections import get_lake

    p = context["params"]
    kind = str(p["kind"])
    values = {k: p[k] for k in SETTINGS[section(kind)]}
    choice = p.get("parameters") or "params.yaml"
    if choice == "params.yaml":
        return "params.yaml", values
    if choice == "latest study if better":
        result = tune.latest(get_lake())
        if result is None or result["kind"] != kind or not result.get("beats_defaults"):
            why = (
                "no study" if result is None else f"study {result['study_id']} does not beat params.yaml by its margin"
            )
            log.info(
                "parameters: params.yaml (%s)", why if result is None or result["kind"] == kind else "another kind"
            )
            return "params.yaml", values
    try:
        study_id, best = tune.latest_params(get_lake(), kind)
    except tune.StudyError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info("parameters: study %s's best %s", study_id, best)
    return f"study {study_id}", values | best


def register(context: dict[str, Any]) -> dict[str, Any]:
    from include.mlops.train import pipeline

    from ..blocks.connections import get_lake

    p = context["params"]
    built = context["ti"].xcom_pull(task_ids="build_training_set")
    values = built["model_params"]  # the run's values of its kind's parameters, as the job trained with them
    result = pipeline.register(
        get_lake(),
        run_key(context),
        params={"model": values, "num_boost_round": int(p["num_boost_round"]), "parameters": built["parameters"]},
        reason=str(p["reason"]),
        dag_run=context["dag_run"].run_id,
    )
    log.info("registered %s version %s (test AUC %.4f)", result["model_name"], result["version"], result["test_auc"])
    from ..blocks.audit import record

    record(
        context,
        "registered",
        result["version"],
        f"trained by {context['dag_run'].dag_id} ({p['reason']})",
        {"test_auc": result.get("test_auc"), "params": values, "num_boost_round": int(p["num_boost_round"])},
        {"run": result.get("run_id")},
    )
    return result


def gate(context: dict[str, Any]) -> dict[str, Any]:
    """The evaluation gate; one Slack message with the decision, the numbers and the report link."""
    from include.mlops.evaluate import gate as evaluation

    from ..blocks.connections import get_lake
    from ..blocks.forms import overrides
    from ..blocks.notifiers import notify

    d = evaluation.run(
        get_lake(), run_key(context), overrides(evaluation.GateConfig, context["params"], prefix="gate_")
    )
    if not d["passed"]:
        verdict = "failed: " + ", ".join(d["failed"])
    elif d.get("queued_behind"):
        verdict = f"passed: queued behind the rollout of v{d['queued_behind']} (deployed when it ends)"
    else:
        verdict = "passed: challenger"
    detail = "\n".join(("ok   " if c["passed"] else "FAIL ") + f"{c['name']}: {c['detail']}" for c in d["checks"])
    from ..blocks.audit import record

    record(
        context,
        "gate_passed" if d["passed"] else "gate_failed",
        d["version"],
        f"the evaluation gate {verdict}",
        {
            "champion": d["champion_version"],
            "checks": {c["name"]: c["passed"] for c in d["checks"]},
            "queued_behind": d.get("queued_behind"),
        },
        {"report": d["report"]},
    )
    notify(
        context,
        "gate",
        f"Model v{d['version']} {verdict}",
        detail,
        {
            "champion": f"v{d['champion_version']}" if d["champion_version"] else "none (first model)",
            "report": d["report"],
        },
    )
    keys = ("passed", "failed", "version", "champion_version", "report", "data_date", "queued_behind")
    return {k: d.get(k) for k in keys}


def way_back(context: dict[str, Any]) -> dict[str, Any] | bool:
    """After a failed gate (``evaluate.wayback``): when monitoring started this run on a decayed champion, the
    earlier champions are weighed on the run's held-out days; one that beats the champion by the gate's margin is
    sent to ``deploy_model`` (the next task), the ramp included. Slack hears the outcome either way. False (the
    trigger is skipped) when the run has no way back or it found nothing."""
    from include.mlops.evaluate import wayback
    from include.mlops.evaluate.config import GateConfig

    from ..blocks.connections import get_lake
    from ..blocks.forms import overrides
    from ..blocks.notifiers import notify

    lake, p = get_lake(), context["params"]
    if not wayback.applies(lake, p.get("end_date")):
        log.info("no way back: this run was not started by monitoring on a decayed champion")
        return False
    r = wayback.search(lake, run_key(context), overrides(GateConfig, p, prefix="gate_"))
    weighed = ", ".join(
        f"v{e['version']} AUC {e['auc']:.4f}" + ("" if e["gate_passed"] else f" (fails {', '.join(e['gate_failed'])})")
        for e in r["earlier"]
    )
    if r["chosen"] is None:
        notify(
            context,
            "gate",
            f"Way back: no earlier champion beats v{r['champion']}",
            f"the retrained version failed the gate; earlier champions weighed on the same days: {weighed or 'none'}",
            {"champion AUC": f"{r['champion_auc']:.4f}", "margin": f"+{r['margin']} AUC"},
        )
        return False
    notify(
        context,
        "gate",
        f"Way back: v{r['chosen']} (an earlier champion) goes through the rollout",
        f"the retrained version failed the gate; earlier champions on the same days: {weighed}",
        {"champion": f"v{r['champion']} (AUC {r['champion_auc']:.4f})", "margin": f"+{r['margin']} AUC"},
    )
    return {"version": r["chosen"], "data_date": r["data_date"]}
