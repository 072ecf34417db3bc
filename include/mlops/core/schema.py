"""The data sets' schema, declared once in ``include/config/datasets.yaml`` (``MLOPS_DATASETS``), and everything
derived from it: the columns the upstream system drops and their order, the typed curated columns, the
validation rules every column implies (type, required, range, format, key uniqueness, the partition's date),
a flight's key, the model's features, what a prediction request carries, and which columns are known only after
the fact (never features).

A column is declared as ``name: type`` or with its facts::

    distance: {type: float, required: true, min: 1, max: 6000, request: true, feature: numeric}

``type``             int, float, string, timestamp, bool
``required``         never null
``min`` / ``max``    the physical range (validation, and the request model)
``pattern``          a regular expression the text must match (validation, and the request model)
``mostly``           the share of rows that must keep to ``min``/``max``/``pattern`` (default: all)
``request``          part of a prediction request: known before the event (true), or optional (``optional``)
``after_event``      known only after the event (a flight's delays and times): never a feature
``feature``          ``numeric`` or ``categorical``: the model sees it

A data set may also name the data set its rows are joined with for features (``join``: the weather at a
flight's origin in its hour), and the order of the model's features (``features``); tagged columns not in that
list come after it. Adding a column is one entry here: the simulator drops it, validation checks it, curation
types it, and, as tagged, training uses it and the service accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import Settings

TYPES = ("int", "float", "string", "timestamp", "bool")
# derived from a data set's event time (UTC) by curation, usable as features
EVENT_HOUR = "event_hour_utc"
EVENT_WEEKDAY = "event_weekday"
DERIVED = (EVENT_WEEKDAY, EVENT_HOUR)
# curation's own columns: whether the label is known, the label itself, the partition's date
IS_LABELLED = "is_labelled"
BATCH_DATE = "batch_date"
# how pandas reads each declared type from CSV (what validation accepts)
PANDAS_TYPES = {
    "int": ["int64", "Int64", "int32", "Int32"],
    "float": ["float64", "Float64", "int64", "Int64"],
    "string": ["str"],
    "timestamp": ["str"],
    "bool": ["bool", "boolean"],
}
_COLUMN_KEYS = {"type", "required", "min", "max", "pattern", "mostly", "request", "after_event", "feature"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    mostly: float | None = None
    request: bool | str = False  # True: a request field; "optional": may be sent
    after_event: bool = False
    feature: str | None = None  # "numeric" | "categorical"

    @classmethod
    def parse(cls, dataset: str, name: str, raw: Any) -> Column:
        raw = {"type": raw} if isinstance(raw, str) else dict(raw or {})
        unknown = set(raw) - _COLUMN_KEYS
        if unknown:
            raise ValueError(
                f"dataset {dataset!r}, column {name!r}: unknown keys {sorted(unknown)}; known: {sorted(_COLUMN_KEYS)}"
            )
        col = cls(name=name, **raw)
        if col.type not in TYPES:
            raise ValueError(
                f"dataset {dataset!r}: column types must be one of {sorted(TYPES)}, got { {name: col.type} }"
            )
        if col.feature not in (None, "numeric", "categorical"):
            raise ValueError(f"dataset {dataset!r}, column {name!r}: feature is 'numeric' or 'categorical'")
        if col.request not in (False, True, "optional"):
            raise ValueError(f"dataset {dataset!r}, column {name!r}: request is true, false or 'optional'")
        if col.feature and col.after_event:
            raise ValueError(
                f"dataset {dataset!r}, column {name!r} is known only after the event: it cannot be a feature"
            )
        return col


@dataclass(frozen=True)
class LabelSpec:
    """Binary label: ``name = source > threshold``; a null source leaves the row unlabelled."""

    source: str
    threshold: float
    name: str = "label"


@dataclass(frozen=True)
class Join:
    """Rows of ``dataset`` joined by the columns ``by`` (the same names on both sides) to give features."""

    dataset: str
    by: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """One upstream data set, as declared."""

    name: str
    landing_file: str
    columns: dict[str, Column]
    key: tuple[str, ...]
    suite: str
    event_time: str | None = None
    date_columns: dict[str, str] = field(default_factory=dict)
    label: LabelSpec | None = None
    csv_options: dict[str, Any] = field(default_factory=dict)
    join: Join | None = None
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)  # order of the model's features

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> DatasetSpec:
        unknown = set(raw) - {
            "landing_file",
            "columns",
            "key",
            "suite",
            "event_time",
            "date_columns",
            "label",
            "csv_options",
            "join",
            "features",
        }
        if unknown:
            raise ValueError(f"dataset {name!r}: unknown keys {sorted(unknown)}")
        for required in ("columns", "key"):
            if required not in raw:
                raise ValueError(f"dataset {name!r}: {required!r} is required")
        columns = {str(k): Column.parse(name, str(k), v) for k, v in raw["columns"].items()}
        key = tuple(raw["key"])
        missing = [c for c in key if c not in columns]
        if missing:
            raise ValueError(f"dataset {name!r}: key columns {missing} are not declared in columns")
        label = raw.get("label")
        join = raw.get("join")
        features = {k: tuple(v) for k, v in (raw.get("features") or {}).items()}
        if set(features) - {"numeric", "categorical"}:
            raise ValueError(f"dataset {name!r}: features has 'numeric' and 'categorical' lists only")
        return cls(
            name=name,
            landing_file=raw.get("landing_file", f"{name}.csv"),
            columns=columns,
            key=key,
            suite=raw.get("suite", name),
            event_time=raw.get("event_time"),
            date_columns=dict(raw.get("date_columns") or {}),
            label=LabelSpec(**label) if label else None,
            csv_options=dict(raw.get("csv_options") or {}),
            join=Join(join["dataset"], tuple(join["by"])) if join else None,
            features=features,
        )

    # what the columns imply ----------------------------------------------------------------------------------
    @property
    def column_names(self) -> list[str]:
        """The columns in the order the upstream system drops them."""
        return list(self.columns)

    def request_columns(self, optional: bool = False) -> list[str]:
        """The columns a prediction request carries (``optional``: those it may carry)."""
        want = "optional" if optional else True
        return [c.name for c in self.columns.values() if c.request is want or c.request == want]

    @property
    def after_event(self) -> frozenset[str]:
        """Known only after the event: never a feature (with the label and curation's own columns)."""
        out = {c.name for c in self.columns.values() if c.after_event} | {IS_LABELLED, BATCH_DATE}
        if self.label:
            out |= {self.label.name, self.label.source}
        return frozenset(out)


def load_datasets(path: Path | str) -> dict[str, DatasetSpec]:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"dataset specification {path} not found (set MLOPS_DATASETS)") from exc
    if not isinstance(raw, dict) or "datasets" not in raw:
        raise ValueError(f"{path}: expected a mapping with a 'datasets' key")
    specs = {name: DatasetSpec.from_dict(name, spec) for name, spec in raw["datasets"].items()}
    for spec in specs.values():
        if spec.join and spec.join.dataset not in specs:
            raise ValueError(f"dataset {spec.name!r} joins {spec.join.dataset!r}, which is not declared in {path}")
    return specs


@lru_cache(maxsize=8)
def _cached_datasets(path: str, mtime: float) -> dict[str, DatasetSpec]:
    return load_datasets(path)


def datasets(settings: Settings | None = None) -> dict[str, DatasetSpec]:
    settings = settings or Settings.from_env()
    path = settings.datasets_file
    return _cached_datasets(str(path), path.stat().st_mtime if path.exists() else 0.0)


def dataset(name: str, settings: Settings | None = None) -> DatasetSpec:
    specs = datasets(settings)
    if name not in specs:
        raise KeyError(
            f"dataset {name!r} is not declared in {(settings or Settings.from_env()).datasets_file}; "
            f"declared: {sorted(specs)}"
        )
    return specs[name]


# the model's view of the declared data ------------------------------------------------------------------------
MODEL_DATASET = "flights"  # the data set whose rows the model scores (one row = one prediction)


@dataclass(frozen=True)
class Features:
    """What the model sees, from the declaration: the scored data set's tagged columns, the derived event-time
    columns, and the joined data set's tagged columns; ``joined`` are those that come from the join."""

    numeric: list[str]
    categorical: list[str]
    joined: list[str]
    join_by: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical


def features(settings: Settings | None = None, name: str = MODEL_DATASET) -> Features:
    spec = dataset(name, settings)
    joined_spec = dataset(spec.join.dataset, settings) if spec.join else None
    tagged: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for c in spec.columns.values():
        if c.feature:
            tagged[c.feature].append(c.name)
    if spec.event_time:
        tagged["numeric"] += list(DERIVED)
    joined = []
    if joined_spec:
        for c in joined_spec.columns.values():
            if c.feature and c.name not in spec.join.by:
                tagged[c.feature].append(c.name)
                joined.append(c.name)
    out = {}
    for kind in ("numeric", "categorical"):
        order = list(spec.features.get(kind, ()))
        unknown = [f for f in order if f not in tagged[kind]]
        if unknown:
            raise ValueError(
                f"dataset {name!r}: features.{kind} lists {unknown}, which are not {kind} features "
                f"(tag them with feature: {kind})"
            )
        out[kind] = order + [f for f in tagged[kind] if f not in order]
    leaks = spec.after_event & set(out["numeric"] + out["categorical"])
    if leaks:
        raise ValueError(f"features known only after the event cannot be used: {sorted(leaks)}")
    return Features(out["numeric"], out["categorical"], joined, spec.join.by if spec.join else ())


@dataclass(frozen=True)
class RequestField:
    """One field of a prediction request: a declared column, and whether the request must carry it."""

    column: Column
    required: bool


def request_fields(settings: Settings | None = None, name: str = MODEL_DATASET) -> list[RequestField]:
    """What a prediction request carries, from the declaration: the scored data set's ``request: true`` columns
    (required), its ``request: optional`` ones, then the joined data set's optional ones (the weather at the
    origin), never a join column twice."""
    spec = dataset(name, settings)
    out = [RequestField(c, c.request is True) for c in spec.columns.values() if c.request]
    seen = {f.column.name for f in out}
    if spec.join:
        out += [
            RequestField(c, False)
            for c in dataset(spec.join.dataset, settings).columns.values()
            if c.request and c.name not in seen and c.name not in spec.join.by
        ]
    return out


# keys ------------------------------------------------------------------------------------------------------------
def key_columns(spec: DatasetSpec) -> tuple[list[str], list[str]]:
    """(date columns in year, month, day order; the other key columns) of a data set's key."""
    date_cols = [spec.date_columns[p] for p in ("year", "month", "day") if p in spec.date_columns]
    return date_cols, [k for k in spec.key if k not in date_cols]


def flight_key(df, settings: Settings | None = None):
    """Each row's stable identity as text, e.g. ``2013-01-05/UA/1545/EWR``: the date from the key's date columns,
    then the other key columns, ``/``-separated (the curated data's unique key)."""
    import pandas as pd

    date_cols, rest = key_columns(dataset(MODEL_DATASET, settings))
    if not len(df):
        return pd.Series([], index=df.index, dtype=object)
    y, m, d = date_cols
    key = (
        df[y].astype(int).astype(str)
        + "-"
        + df[m].astype(int).map("{:02d}".format)
        + "-"
        + df[d].astype(int).map("{:02d}".format)
    )
    for c in rest:
        key = key + "/" + df[c].astype(str)
    return key


# validation rules the declaration implies --------------------------------------------------------------------
def expectations(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The Great Expectations rules every declared column implies, in the order a reader expects them: the
    column set, each column's type, the required columns, the key's uniqueness, the partition's date (GX suite
    parameters ``batch_year`` ...), ranges, formats. A suite file adds the rules no column states (row counts,
    shares)."""

    def rule(kind: str, **kwargs) -> dict[str, Any]:
        return {"type": kind, "kwargs": kwargs, "meta": {"from": "datasets.yaml"}}

    cols = list(spec.columns.values())
    out = [rule("expect_table_columns_to_match_set", column_set=[c.name for c in cols], exact_match=True)]
    out += [
        rule("expect_column_values_to_be_in_type_list", column=c.name, type_list=PANDAS_TYPES[c.type]) for c in cols
    ]
    out += [rule("expect_column_values_to_not_be_null", column=c.name) for c in cols if c.required]
    if len(spec.key) > 1:
        out.append(rule("expect_compound_columns_to_be_unique", column_list=list(spec.key)))
    elif spec.key:
        out.append(rule("expect_column_values_to_be_unique", column=spec.key[0]))
    for part, col in spec.date_columns.items():
        out.append(
            rule(
                "expect_column_values_to_be_between",
                column=col,
                min_value={"$PARAMETER": f"batch_{part}"},
                max_value={"$PARAMETER": f"batch_{part}"},
            )
        )
    for c in cols:
        mostly = {"mostly": c.mostly} if c.mostly is not None else {}
        if c.min is not None or c.max is not None:
            out.append(
                rule(
                    "expect_column_values_to_be_between",
                    column=c.name,
                    **mostly,
                    **{k: v for k, v in (("min_value", c.min), ("max_value", c.max)) if v is not None},
                )
            )
    out += [
        rule(
            "expect_column_values_to_match_regex",
            column=c.name,
            regex=c.pattern,
            **({"mostly": c.mostly} if c.mostly is not None else {}),
        )
        for c in cols
        if c.pattern
    ]
    return out
