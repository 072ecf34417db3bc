"""Ingestion of one upstream drop: extract -> validate -> quarantine or curate.

Each step is idempotent and keeps its data in the lake (never in memory between steps):

``extract``   copies the complete drop from ``landing/`` to ``staging/`` (transient upstream faults raise
              ``TransientSourceError``; the caller retries with backoff)
``check``     validates the staged file with the data set's GX suite; on failure the drop is moved to
              ``quarantine/`` with ``report.json`` and ``BatchRejected`` is raised
``curate``    writes the typed, enriched Parquet partition to ``curated/``, replacing it whole
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .config import DatasetSpec, Settings
from .lake import Lake, as_date
from .sources.landing import SUCCESS_MARKER, drop_folder, drop_ready, read_drop
from .validation import BatchRejected, ValidationReport, read_csv, validate

log = logging.getLogger(__name__)

CURATED_FILE = "part-00000.parquet"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class Batch:
    """One data set's drop for one date."""

    spec: DatasetSpec
    date: dt.date

    @property
    def id(self) -> str:
        return f"{self.spec.name}/{self.date.isoformat()}"

    def folder(self, zone: str) -> str:
        return Lake.partition(zone, self.spec.name, self.date)


def batch(spec: DatasetSpec, date: dt.date | str) -> Batch:
    return Batch(spec, as_date(date))


def is_ready(lake: Lake, b: Batch) -> bool:
    return drop_ready(lake, b.spec.name, b.date)


def extract(lake: Lake, b: Batch) -> dict[str, Any]:
    """Fetch the drop into staging; returns what was staged (bytes, checksum, location)."""
    if not is_ready(lake, b):
        raise FileNotFoundError(
            f"batch {b.id}: no complete drop at {lake.uri(drop_folder(b.spec.name, b.date))} "
            f"({SUCCESS_MARKER} missing)"
        )
    data = read_drop(lake, b.spec.name, b.date, b.spec.landing_file)
    lake.rm(b.folder("staging"))
    lake.write_bytes(data, b.folder("staging"), b.spec.landing_file)
    return {
        "batch": b.id,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "staged": lake.uri(b.folder("staging"), b.spec.landing_file),
    }


def check(lake: Lake, b: Batch, settings: Settings) -> ValidationReport:
    """Validate the staged drop; quarantine it and raise ``BatchRejected`` when any rule fails."""
    data = lake.read_bytes(b.folder("staging"), b.spec.landing_file)
    source = lake.uri(drop_folder(b.spec.name, b.date), b.spec.landing_file)
    try:
        df = read_csv(data, b.spec.name, b.date.isoformat(), b.spec.csv_options)
        report = validate(df, b.spec.name, b.date, b.spec.suite, settings.expectations_dir, source=source)
    except BatchRejected as exc:
        report = exc.report
        report.source = source
    if report.success:
        return report
    uri = quarantine(lake, b, report)
    raise BatchRejected(report, quarantine_uri=uri)


def quarantine(lake: Lake, b: Batch, report: ValidationReport) -> str:
    """Move the drop, byte for byte, to quarantine with its report; an earlier rejection is kept in history/."""
    q = b.folder("quarantine")
    if lake.exists(q, REPORT_FILE):
        previous = lake.read_json(q, REPORT_FILE).get("validated_at", "earlier").replace(":", "")
        for name in lake.ls(q):
            if name != "history":
                lake.copy((q, name), (q, "history", previous, name))
                lake.rm(q, name)
    landing = drop_folder(b.spec.name, b.date)
    src = (landing, b.spec.landing_file) if lake.exists(landing, b.spec.landing_file) else (
        b.folder("staging"), b.spec.landing_file)
    lake.copy(src, (q, b.spec.landing_file))
    lake.write_json(report.to_dict() | {"quarantined_at": _now()}, q, REPORT_FILE)
    lake.rm(landing)
    lake.rm(b.folder("staging"))
    uri = lake.uri(q)
    log.warning("batch %s quarantined at %s: %s", b.id, uri, ", ".join(report.failed_rules))
    return uri


def transform(df: pd.DataFrame, spec: DatasetSpec, date: dt.date) -> pd.DataFrame:
    """Typed columns in the declared order, plus derived columns; rows sorted by key (deterministic)."""
    out = pd.DataFrame(index=df.index)
    for col, kind in spec.columns.items():
        s = df[col]
        if kind == "int":
            out[col] = pd.to_numeric(s).astype("Int64")
        elif kind == "float":
            out[col] = pd.to_numeric(s).astype("float64")
        elif kind == "string":
            out[col] = s.astype("string")
        elif kind == "timestamp":
            out[col] = pd.to_datetime(s, utc=True)
        elif kind == "bool":
            out[col] = s.astype("boolean")
    if spec.event_time:
        ts = out[spec.event_time]
        out["event_hour_utc"] = ts.dt.hour.astype("Int8")
        out["event_weekday"] = ts.dt.weekday.astype("Int8")
    if spec.label:
        src = out[spec.label.source]
        labelled = src.notna()
        out[spec.label.name] = pd.array(np.where(labelled, src > spec.label.threshold, False), dtype="Int8")
        out.loc[~labelled, spec.label.name] = pd.NA
        out["is_labelled"] = labelled.astype(bool)
    out["batch_date"] = pd.Timestamp(date).date()
    out = out.sort_values(list(spec.key), kind="mergesort").reset_index(drop=True)
    return out


def curate(lake: Lake, b: Batch) -> dict[str, Any]:
    """Write the curated partition from the staged (validated) drop, replacing the partition whole."""
    data = lake.read_bytes(b.folder("staging"), b.spec.landing_file)
    df = transform(read_csv(data, b.spec.name, b.date.isoformat(), b.spec.csv_options), b.spec, b.date)
    folder = b.folder("curated")
    lake.replace_partition(df, folder, CURATED_FILE)
    lake.rm(b.folder("staging"))
    info: dict[str, Any] = {"dataset": b.spec.name, "date": b.date.isoformat(), "rows": int(len(df)),
                            "uri": lake.uri(folder, CURATED_FILE)}
    if b.spec.label:
        info["labelled"] = int(df["is_labelled"].sum())
        info["positive_rate"] = round(float(df[b.spec.label.name].astype("Float64").mean()), 4)
    return info


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


# --- reruns after a quarantine --------------------------------------------------------------------------------
# Quarantine moves the rejected drop out of landing/, so a rerun of that date finds no drop. These functions let
# the sensor tell that case apart from a drop that is merely late, and let a person put a quarantined file back.

RELEASE_COMMAND = "python -m include.mlops.ingestion release {dataset} {date}"
RELEASED_FILE = "released.json"


def quarantined_without_drop(lake: Lake, b: Batch) -> dict[str, Any] | None:
    """The quarantine report of ``b`` when its drop was quarantined and ``landing/`` holds nothing newer (no
    file at all: an upstream writing a corrected drop counts as a new one); ``None`` otherwise."""
    q = b.folder("quarantine")
    if not lake.exists(q, REPORT_FILE) or lake.ls(drop_folder(b.spec.name, b.date)):
        return None
    return lake.read_json(q, REPORT_FILE) | {"quarantine_uri": lake.uri(q)}


def rerun_blocked_message(lake: Lake, b: Batch, record: dict[str, Any]) -> str:
    """What a person rerunning a quarantined date without a new drop needs to read."""
    rules = ", ".join(record.get("failed_rules") or []) or "see report.json"
    return (
        f"batch {b.id} was quarantined (at {record.get('quarantined_at', 'an earlier run')}; failed: {rules}) and "
        f"no new drop lies in {lake.uri(drop_folder(b.spec.name, b.date))}: quarantine moved the rejected file to "
        f"{record['quarantine_uri']}, so this run would wait for a drop until the sensor's timeout. Either publish "
        f"a corrected drop ({b.spec.landing_file}, then an empty {SUCCESS_MARKER} marker) and rerun, or, when the "
        f"quarantined file is right after all (the rule was wrong and has been fixed), put it back in landing/ "
        f"and rerun: {RELEASE_COMMAND.format(dataset=b.spec.name, date=b.date.isoformat())}"
    )


def release(lake: Lake, b: Batch) -> dict[str, Any]:
    """Move a quarantined file back to ``landing/`` with its ``_SUCCESS`` marker, so that the next run ingests
    (and validates) it again; the quarantine's report moves to ``quarantine/…/history/<validated_at>/`` with a
    ``released.json`` beside it. Refuses when there is nothing to release or landing/ already holds a drop."""
    q = b.folder("quarantine")
    landing = drop_folder(b.spec.name, b.date)
    name = b.spec.landing_file
    if not lake.exists(q, name):
        raise FileNotFoundError(f"batch {b.id}: nothing to release, {lake.uri(q, name)} does not exist")
    if lake.ls(landing):
        raise FileExistsError(f"batch {b.id}: {lake.uri(landing)} already holds a drop ({', '.join(lake.ls(landing))});"
                              " ingest or remove it first: releasing would overwrite it")
    report = lake.read_json(q, REPORT_FILE) if lake.exists(q, REPORT_FILE) else {}
    stamp = str(report.get("validated_at") or _now()).replace(":", "")
    lake.copy((q, name), (landing, name))
    lake.touch(landing, SUCCESS_MARKER)  # the marker last: the drop is complete
    for entry in lake.ls(q):
        if entry not in ("history", name):
            lake.copy((q, entry), (q, "history", stamp, entry))
            lake.rm(q, entry)
    record = {"batch": b.id, "released_at": _now(), "to": lake.uri(landing, name),
              "failed_rules": report.get("failed_rules", [])}
    lake.write_json(record, q, "history", stamp, RELEASED_FILE)
    lake.rm(q, name)
    log.warning("batch %s released from quarantine to %s", b.id, record["to"])
    return record | {"history": lake.uri(q, "history", stamp)}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from .config import dataset
    from .lake import lake_from_settings

    ap = argparse.ArgumentParser(prog="python -m include.mlops.ingestion",
                                 description="Ingestion maintenance on the lake of MLOPS_LAKE_URL / MLOPS_HOME.")
    sub = ap.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="move a quarantined drop back to landing/ (with its _SUCCESS marker), "
                                         "keeping its report in the quarantine's history/")
    rel.add_argument("dataset")
    rel.add_argument("date", help="YYYY-MM-DD")
    args = ap.parse_args(argv)
    lake = lake_from_settings()
    b = batch(dataset(args.dataset), args.date)
    try:
        record = release(lake, b)
    except (FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"released {b.id}: {record['to']} (with {SUCCESS_MARKER}); report kept in {record['history']}")
    print(f"now rerun that date, e.g. airflow dags test ingest_flights {b.date.isoformat()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
