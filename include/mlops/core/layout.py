"""Every place in the lake, named once; everyone else asks here. Paths are relative to the lake's root, the same
for ``file://`` and ``s3://`` (``Lake`` checks each one stays under the root)::

    landing/<dataset>/date=D/                  what the upstream system drops: <dataset>.csv, then _SUCCESS
    staging/<dataset>/date=D/run=<run>/        one run's extracted copy, validated from there
    curated/<dataset>/date=D/part-00000.parquet   validated, typed; rewritten whole on a rerun
    quarantine/<dataset>/date=D/               a rejected drop untouched, report.json, history/ of earlier ones

and the model's own places, in its folder ``M/`` (its declared ``lake:``; default ``models/<name>/``; the flights
model declares ``lake: ""``: at the root, where they always were)::

    M/training/<run>/                          a training run: its staged set, model, job and registration
    M/predictions/date=D/                      the prediction log, by the scored row's date
    M/reports/gate/<run>/, M/reports/gate/latest.json          the gate's decision and report
    M/reports/monitoring/date=D/, latest.json, triggers.json   the daily monitoring report, its summary, triggers
    M/reports/monitoring/service_scrape.json   the prediction service's counters at the last check
    M/reports/deployments/v<N>.json            a canary's evidence and decision
    M/deployments/rollout.json, M/deployments/history/         the current rollout and past ones
    M/audit/<registered name>/<seq:08d>.json   the audit trail: one record per decision, written once (core.audit)
"""

from __future__ import annotations

import datetime as dt

from .places import MODEL_PLACES, ZONES  # noqa: F401 - the names every path starts with

DATE = "date="  # a partition folder: date=YYYY-MM-DD
SUCCESS = "_SUCCESS"  # a drop is complete once this marker exists
UNAVAILABLE = "_UNAVAILABLE"  # the simulator's flapping-upstream fault
CURATED_FILE = "part-00000.parquet"
QUARANTINE_REPORT = "report.json"
HISTORY = "history"


def _date(value: dt.date | str) -> str:
    from .lake import as_date

    return as_date(value).isoformat()


def partition(zone: str, dataset: str, date: dt.date | str) -> str:
    """``<zone>/<dataset>/date=YYYY-MM-DD`` (a data set's name is one path segment)."""
    from .lake import UnsafePath, segments

    if zone not in ZONES:
        raise ValueError(f"unknown lake zone {zone!r}; zones: {ZONES}")
    if len(segments(dataset)) != 1:
        raise UnsafePath(f"a data set name is one path segment, not {dataset!r}")
    return f"{zone}/{dataset}/{DATE}{_date(date)}"


def landing(dataset: str, date: dt.date | str) -> str:
    return partition("landing", dataset, date)


def staging(dataset: str, date: dt.date | str, run: str | None = None) -> str:
    """A date's staging folder, or one run's own within it."""
    folder = partition("staging", dataset, date)
    return f"{folder}/run={run}" if run else folder


def curated(dataset: str, date: dt.date | str) -> str:
    return partition("curated", dataset, date)


def curated_file(dataset: str, date: dt.date | str) -> tuple[str, str]:
    return curated(dataset, date), CURATED_FILE


def quarantine(dataset: str, date: dt.date | str) -> str:
    return partition("quarantine", dataset, date)


def zone(zone_: str, dataset: str) -> str:
    """``<zone>/<dataset>``: where a data set's partitions of one zone are listed."""
    return f"{zone_}/{dataset}"


def partitions(lake, *parts: str) -> list[dt.date]:
    """The dates present under a folder of ``lake`` (``zone("curated", "flights")``, ``prediction_log()``, ...) as
    ``date=`` partitions, in order."""
    from .lake import as_date

    out = []
    for name in lake.ls(*parts):
        if name.startswith(DATE):
            try:
                out.append(as_date(name[len(DATE) :]))
            except ValueError:
                continue
    return sorted(out)


# training and evaluation ----------------------------------------------------------------------------------------
def training(run_key: str) -> str:
    """``M/training/<run_key>``; the key must be one path segment (``Lake`` refuses ``.``, ``..``, empty)."""
    from .lake import UnsafePath, segments

    if len(segments(run_key)) != 1:
        raise UnsafePath(f"a run key is one path segment, not {run_key!r}")
    return f"{_model()}training/{run_key}"


# what a training run's folder holds: its staged set, then the model, the job's summary, the registration
TRAINING_SPEC = "spec.json"
TRAINING_VALIDATION = "validation.parquet"
TRAINING_TEST = "test.parquet"
TRAINING_HOLDOUT = "holdout.parquet"  # the test days un-encoded, for scoring any model
TRAINING_PROFILE = "profile.json"  # the reference profile, completed at registration
TRAINING_MODEL = "model.txt"
TRAINING_BASELINE = "baseline.json"  # the baseline kind fitted on the same split (the gate's "beats the baseline")
TRAINING_JOB = "job.json"
TRAINING_REGISTERED = "registered.json"


def training_shard(i: int) -> tuple[str, str]:
    """One worker's training rows, relative to a training folder."""
    return "train", f"part-{i:05d}.parquet"


GATE_REPORT = "report.html"
GATE_DECISION = "decision.json"


def reports() -> str:
    """``M/reports``: every report of the model's, the gate's, monitoring's and the canaries' folders below."""
    return f"{_model()}reports"


def gates() -> str:
    """``M/reports/gate``: a folder per training run the gate judged."""
    return f"{reports()}/gate"


def gate(run_key: str) -> str:
    """The gate's ``decision.json`` and ``report.html`` of a training run."""
    training(run_key)  # the same check of the key
    return f"{gates()}/{run_key}"


def gate_latest() -> tuple[str, str]:
    return gates(), "latest.json"


# serving, deployment, monitoring --------------------------------------------------------------------------------
def prediction_log() -> str:
    """``M/predictions``: the prediction log, a ``date=`` partition per scored row's date."""
    return f"{_model()}predictions"


def predictions(date: dt.date | str) -> str:
    """The prediction log of one date (the scored rows')."""
    return f"{prediction_log()}/{DATE}{_date(date)}"


def deployments() -> str:
    return f"{_model()}deployments"


def rollout() -> tuple[str, str]:
    """The current rollout's state."""
    return deployments(), "rollout.json"


def past_rollouts() -> str:
    """A folder of finished rollouts' records."""
    return f"{deployments()}/history"


def deployment_reports() -> str:
    return f"{reports()}/deployments"


def way_back(run_key: str) -> tuple[str, str]:
    """The way back of a training run whose gate failed: the earlier champions scored on its held-out days."""
    return deployment_reports(), f"way-back-{run_key}.json"


def canary_evidence(version: str) -> tuple[str, str]:
    """A canary's evidence and decision, written when it is decided on evidence."""
    return deployment_reports(), f"v{version}.json"


def rollout_history(started_at: str, version: str | None) -> tuple[str, str]:
    """A finished rollout's record, named by when it started and its version (``:`` left out of the time)."""
    return past_rollouts(), f"{started_at.replace(':', '')}-v{version}.json"


def monitoring_reports() -> str:
    """``M/reports/monitoring``: the daily reports, their summary, the triggers, the service's last counters."""
    return f"{reports()}/monitoring"


def monitoring_latest() -> tuple[str, str]:
    return monitoring_reports(), "latest.json"


def triggers() -> tuple[str, str]:
    return monitoring_reports(), "triggers.json"


def service_scrape() -> tuple[str, str]:
    """The prediction service's /metrics at the last check: the next check's period starts from these counters."""
    return monitoring_reports(), "service_scrape.json"


MONITORING_REPORT = "report.json"
MONITORING_HTML = "report.html"


def monitoring(date: dt.date | str) -> str:
    """The daily monitoring report's folder (``report.json``, ``report.html``)."""
    return f"{monitoring_reports()}/{DATE}{_date(date)}"


# tuning ---------------------------------------------------------------------------------------------------------
def tuning(study_id: str | None = None) -> str:
    """``M/tuning``, or a study's folder ``M/tuning/<study_id>`` (one path segment): its settings, each round's
    proposals, each trial's result, the study's result (``train.tune`` names the files)."""
    from .lake import UnsafePath, segments

    if study_id is None:
        return f"{_model()}tuning"
    if len(segments(study_id)) != 1:
        raise UnsafePath(f"a study id is one path segment, not {study_id!r}")
    return f"{_model()}tuning/{study_id}"


def tuning_latest() -> tuple[str, str]:
    """The latest finished study's result (what train_model's "latest study" trains with)."""
    return tuning(), "latest.json"


def audit_trail() -> str:
    """``M/audit/<registered name>``: the trail of the registered model (``MLOPS_MODEL_NAME``, else the declared
    name: the registry holds the trail's head per registered model), a hash-chained record per decision about a
    version, each written once and never rewritten (``core.audit`` names the records)."""
    from .schema import model

    return f"{_model()}audit/{model().registered_name.replace('/', '_')}"


# the model's folder ---------------------------------------------------------------------------------------------
def _model() -> str:
    """The model's folder with a trailing ``/`` (``""``: the lake's root), from its declaration."""
    from .schema import model

    folder = model().lake
    return f"{folder}/" if folder else ""
