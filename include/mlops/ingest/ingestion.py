"""Ingestion of one upstream drop: extract -> validate -> quarantine or curate.

Each step is idempotent and keeps its data in the lake (never in memory between steps):

``extract``   copies the complete drop from ``landing/`` to this run's own staging folder
              ``staging/<dataset>/date=D/run=<run>/`` (transient upstream faults raise ``TransientSourceError``;
              the caller retries with backoff) and returns the bytes' sha256
``check``     validates the staged file with the data set's GX suite; on failure the drop is moved to
              ``quarantine/`` with ``report.json`` and ``BatchRejected`` is raised
``curate``    writes the typed, enriched Parquet partition to ``curated/``, replacing it whole (atomically)

Reruns and concurrent runs: each run stages into a folder of its own, so two runs of one date never read or
delete each other's copy. ``check`` and ``curate`` take the sha256 that ``extract`` reported: when their staged
copy is gone (a task cleared and run again after the run finished), they use the landing drop only if it still
has exactly those bytes, and otherwise refuse (``StaleDrop``): a partition is never curated from bytes that
were not validated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..core import layout
from ..core.config import Settings
from ..core.lake import Lake, as_date, segments
from ..core.schema import BATCH_DATE, IS_LABELLED, DatasetSpec
from .landing import drop_ready, read_drop
from .validation import BatchRejected, ValidationReport, read_csv, validate

log = logging.getLogger(__name__)


class StaleDrop(RuntimeError):
    """The bytes a step would use are not the bytes that were extracted (and validated) for this run."""


@dataclass(frozen=True)
class Batch:
    """One data set's drop for one date, as handled by one run (``run``: a lake-safe run key)."""

    spec: DatasetSpec
    date: dt.date
    run: str = "local"

    @property
    def id(self) -> str:
        return f"{self.spec.name}/{self.date.isoformat()}"

    def folder(self, zone: str) -> str:
        return layout.partition(zone, self.spec.name, self.date)

    @property
    def staging(self) -> str:
        """This run's own staging folder."""
        return layout.staging(self.spec.name, self.date, self.run)


def batch(spec: DatasetSpec, date: dt.date | str, run: str = "local") -> Batch:
    segments(run)  # one safe path segment
    return Batch(spec, as_date(date), run)


def is_ready(lake: Lake, b: Batch) -> bool:
    return drop_ready(lake, b.spec.name, b.date)


def extract(lake: Lake, b: Batch) -> dict[str, Any]:
    """Fetch the drop into staging; returns what was staged (bytes, checksum, location)."""
    if not is_ready(lake, b):
        raise FileNotFoundError(
            f"batch {b.id}: no complete drop at {lake.uri(layout.landing(b.spec.name, b.date))} "
            f"({layout.SUCCESS} missing)"
        )
    data = read_drop(lake, b.spec.name, b.date, b.spec.landing_file)
    lake.rm(b.staging)
    lake.write_bytes(data, b.staging, b.spec.landing_file)
    return {
        "batch": b.id,
        "bytes": len(data),
        "sha256": _sha256(data),
        "staged": lake.uri(b.staging, b.spec.landing_file),
    }


def staged(lake: Lake, b: Batch, sha256: str | None = None) -> bytes:
    """The bytes this run extracted: its staging copy, or (once that is gone) the landing drop if it still has
    exactly the ``sha256`` that extract reported. Anything else raises ``StaleDrop``."""
    if lake.exists(b.staging, b.spec.landing_file):
        data = lake.read_bytes(b.staging, b.spec.landing_file)
        if sha256 is None or _sha256(data) == sha256:
            return data
        raise StaleDrop(
            f"batch {b.id}: the staged copy at {lake.uri(b.staging)} is not the one extracted "
            f"(sha256 {_sha256(data)[:12]} != {sha256[:12]}); rerun the whole run"
        )
    landing = layout.landing(b.spec.name, b.date)
    if sha256 is not None and lake.exists(landing, layout.SUCCESS) and lake.exists(landing, b.spec.landing_file):
        data = lake.read_bytes(landing, b.spec.landing_file)
        if _sha256(data) == sha256:
            return data
        raise StaleDrop(
            f"batch {b.id}: the drop at {lake.uri(landing)} changed since it was extracted "
            f"(sha256 {_sha256(data)[:12]} != {sha256[:12]}); rerun the whole run, from extract"
        )
    raise StaleDrop(
        f"batch {b.id}: nothing staged at {lake.uri(b.staging)} and no drop in landing with the "
        "extracted bytes; rerun the whole run, from extract"
    )


def check(lake: Lake, b: Batch, settings: Settings, sha256: str | None = None) -> ValidationReport:
    """Validate the staged drop; quarantine it and raise ``BatchRejected`` when any rule fails."""
    data = staged(lake, b, sha256)
    source = lake.uri(layout.landing(b.spec.name, b.date), b.spec.landing_file)
    try:
        df = read_csv(data, b.spec.name, b.date.isoformat(), b.spec.read_options)
        report = validate(df, b.spec, b.date, settings.expectations_dir, source=source)
    except BatchRejected as exc:
        report = exc.report
        report.source = source
    if report.success:
        return report
    uri = quarantine(lake, b, report, data)
    raise BatchRejected(report, quarantine_uri=uri)


def quarantine(lake: Lake, b: Batch, report: ValidationReport, data: bytes | None = None) -> str:
    """Move the drop, byte for byte, to quarantine with its report; an earlier rejection is kept in history/.
    ``data``: the rejected bytes (else the landing drop, else this run's staged copy)."""
    q = b.folder("quarantine")
    if lake.exists(q, layout.QUARANTINE_REPORT):
        previous = lake.read_json(q, layout.QUARANTINE_REPORT).get("validated_at", "earlier").replace(":", "")
        for name in lake.ls(q):
            if name != layout.HISTORY:
                lake.copy((q, name), (q, layout.HISTORY, previous, name))
                lake.rm(q, name)
    landing = layout.landing(b.spec.name, b.date)
    if data is not None:
        lake.write_bytes(data, q, b.spec.landing_file)
    else:
        src = (
            (landing, b.spec.landing_file)
            if lake.exists(landing, b.spec.landing_file)
            else (b.staging, b.spec.landing_file)
        )
        lake.copy(src, (q, b.spec.landing_file))
    lake.write_json(report.to_dict() | {"quarantined_at": _now()}, q, layout.QUARANTINE_REPORT)
    lake.rm(landing)
    lake.rm(b.staging)
    lake.rmdir_if_empty(b.folder("staging"))
    uri = lake.uri(q)
    log.warning("batch %s quarantined at %s: %s", b.id, uri, ", ".join(report.failed_rules))
    return uri


def transform(df: pd.DataFrame, spec: DatasetSpec, date: dt.date) -> pd.DataFrame:
    """Typed columns in the declared order, plus derived columns; rows sorted by key (deterministic)."""
    out = pd.DataFrame(index=df.index)
    for col, column in spec.columns.items():
        s, kind = df[col], column.type
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
        elif kind == "date":
            out[col] = column.dates(s)
    out = spec.event_features(out)
    if spec.label:
        labelled, out[spec.label.name] = spec.label.apply(out[spec.label.source])
        out[IS_LABELLED] = labelled
    out[BATCH_DATE] = pd.Timestamp(date).date()
    out = out.sort_values(list(spec.key), kind="mergesort").reset_index(drop=True)
    return out


def curate(lake: Lake, b: Batch, sha256: str | None = None) -> dict[str, Any]:
    """Write the curated partition from the staged (validated) drop, replacing the partition whole."""
    data = staged(lake, b, sha256)
    df = transform(read_csv(data, b.spec.name, b.date.isoformat(), b.spec.read_options), b.spec, b.date)
    folder = b.folder("curated")
    lake.replace_partition(df, folder, layout.CURATED_FILE)
    lake.rm(b.staging)
    lake.rmdir_if_empty(b.folder("staging"))
    info: dict[str, Any] = {
        "dataset": b.spec.name,
        "date": b.date.isoformat(),
        "rows": int(len(df)),
        "sha256": _sha256(data),
        "uri": lake.uri(folder, layout.CURATED_FILE),
    }
    if b.spec.label:
        info["labelled"] = int(df[IS_LABELLED].sum())
        info["positive_rate"] = round(float(df[b.spec.label.name].astype("Float64").mean()), 4)
    return info


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# --- reruns after a quarantine --------------------------------------------------------------------------------
# Quarantine moves the rejected drop out of landing/, so a rerun of that date finds no drop. These functions let
# the sensor tell that case apart from a drop that is merely late, and let a person put a quarantined file back.

RELEASE_COMMAND = "python -m include.mlops.ingest.ingestion release {dataset} {date}"
RELEASED_FILE = "released.json"


def quarantined_without_drop(lake: Lake, b: Batch) -> dict[str, Any] | None:
    """The quarantine report of ``b`` when its drop was quarantined and ``landing/`` holds nothing newer (no
    file at all: an upstream writing a corrected drop counts as a new one); ``None`` otherwise."""
    q = b.folder("quarantine")
    if not lake.exists(q, layout.QUARANTINE_REPORT) or lake.ls(layout.landing(b.spec.name, b.date)):
        return None
    return lake.read_json(q, layout.QUARANTINE_REPORT) | {"quarantine_uri": lake.uri(q)}


def rerun_blocked_message(lake: Lake, b: Batch, record: dict[str, Any]) -> str:
    """What a person rerunning a quarantined date without a new drop needs to read."""
    rules = ", ".join(record.get("failed_rules") or []) or "see report.json"
    return (
        f"batch {b.id} was quarantined (at {record.get('quarantined_at', 'an earlier run')}; failed: {rules}) and "
        f"no new drop lies in {lake.uri(layout.landing(b.spec.name, b.date))}: quarantine moved the rejected file to "
        f"{record['quarantine_uri']}, so this run would wait for a drop until the sensor's timeout. Either publish "
        f"a corrected drop ({b.spec.landing_file}, then an empty {layout.SUCCESS} marker) and rerun, or, when the "
        f"quarantined file is right after all (the rule was wrong and has been fixed), put it back in landing/ "
        f"and rerun: {RELEASE_COMMAND.format(dataset=b.spec.name, date=b.date.isoformat())}"
    )


def release(lake: Lake, b: Batch) -> dict[str, Any]:
    """Move a quarantined file back to ``landing/`` with its ``_SUCCESS`` marker, so that the next run ingests
    (and validates) it again; the quarantine's report moves to ``quarantine/…/history/<validated_at>/`` with a
    ``released.json`` beside it. Refuses when there is nothing to release or landing/ already holds a drop."""
    q = b.folder("quarantine")
    landing = layout.landing(b.spec.name, b.date)
    name = b.spec.landing_file
    if not lake.exists(q, name):
        raise FileNotFoundError(f"batch {b.id}: nothing to release, {lake.uri(q, name)} does not exist")
    if lake.ls(landing):
        raise FileExistsError(
            f"batch {b.id}: {lake.uri(landing)} already holds a drop ({', '.join(lake.ls(landing))});"
            " ingest or remove it first: releasing would overwrite it"
        )
    report = lake.read_json(q, layout.QUARANTINE_REPORT) if lake.exists(q, layout.QUARANTINE_REPORT) else {}
    stamp = str(report.get("validated_at") or _now()).replace(":", "")
    lake.copy((q, name), (landing, name))
    lake.touch(landing, layout.SUCCESS)  # the marker last: the drop is complete
    for entry in lake.ls(q):
        if entry not in (layout.HISTORY, name):
            lake.copy((q, entry), (q, layout.HISTORY, stamp, entry))
            lake.rm(q, entry)
    record = {
        "batch": b.id,
        "released_at": _now(),
        "to": lake.uri(landing, name),
        "failed_rules": report.get("failed_rules", []),
    }
    lake.write_json(record, q, layout.HISTORY, stamp, RELEASED_FILE)
    lake.rm(q, name)
    log.warning("batch %s released from quarantine to %s", b.id, record["to"])
    return record | {layout.HISTORY: lake.uri(q, layout.HISTORY, stamp)}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from ..core.lake import lake_from_settings
    from ..core.schema import dataset

    ap = argparse.ArgumentParser(
        prog="python -m include.mlops.ingest.ingestion",
        description="Ingestion maintenance on the lake of MLOPS_LAKE_URL / MLOPS_HOME.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    rel = sub.add_parser(
        "release",
        help="move a quarantined drop back to landing/ (with its _SUCCESS marker), "
        "keeping its report in the quarantine's history/",
    )
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
    print(f"released {b.id}: {record['to']} (with {layout.SUCCESS}); report kept in {record['history']}")
    print(f"now rerun that date, e.g. airflow dags test ingest_flights {b.date.isoformat()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
