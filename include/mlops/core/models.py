"""The models, declared in the ``models:`` list of the data sets' file (``include/config/datasets.yaml``), and every
name that depends on a model, derived from its declaration.

A model scores the rows of one data set (one row, one prediction) and declares::

    - name: flight_delay            # the registry's model name (MLOPS_MODEL_NAME overrides it for a deployment)
      dataset: flights              # the scored data set
      key: [year, month, day, carrier, flight, origin]   # the entity: one prediction per key (default: the
                                                         # data set's key)
      label: {source: arr_delay, threshold: 15}          # the binary outcome (below)
      joins: [{dataset: weather, by: [origin, time_hour]}]  # data sets joined for features (zero or one today)
      features: {numeric: [...], categorical: [...]}     # the order of the model's features (tagged columns
                                                         # not listed come after)
      score: delay_probability      # the answer's field: the probability of a positive outcome
      api: {rows: flights, key: flight_key}   # a batch request's list, the answer's key field, and the
                                              # prediction log's date column (date: default <key>_date, a
                                              # trailing _key left out: flight_date)
      experiment: flight-delay      # the tracking experiment (default: the name)
      dags: {train: train_model, deploy: deploy_model, monitor: monitor_model}   # default: train_<name>, ...
      lake: ""                      # the folder of its places in the lake (training, predictions, reports,
                                    # deployments; default models/<name>; "": the lake's root)

The label is binary, in one of three forms: ``{source: <number column>, threshold: t}`` (positive when the value
is above t), ``{source: <column>, positive: [v, ...]}`` (positive when the value is one of those), or
``{source: <bool column>}`` (positive when true). A row whose source is null is unlabelled. ``name`` (default
``label``) is the curated column that holds it. Any other outcome (several classes, a number to predict) is
refused: the platform's models, gate, canary and monitoring are built for a binary outcome.

The declaration is read with the data sets (``schema.declaration``; ``schema.model`` gives one model).
Everything a model's declaration names is checked when the file loads (its data set, key, label source and type,
joined data sets and their columns, feature order), with an error naming the file, the model, the key and the
column.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

_MODEL_KEYS = {"name", "dataset", "key", "label", "joins", "features", "score", "api", "experiment", "dags", "lake"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # one folder of a model's lake path
DAG_ROLES = ("train", "deploy", "monitor", "tune")  # the model's own DAGs (ingestion is per data set)
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")  # what Airflow accepts as a DAG id
_LABEL_KEYS = {"source", "threshold", "positive", "name"}
_API_KEYS = {"rows", "key", "date"}
# the prediction log's own columns, beside the key, its date and the logged request fields
LOG_COLUMNS = ("request_id", "score", "version", "arm", "predicted_at")
_NUMBER_TYPES = ("int", "float")


@dataclass(frozen=True)
class Label:
    """A binary outcome from one column: above a threshold, one of a set of values, or a boolean that is true."""

    source: str
    name: str = "label"
    threshold: float | None = None
    positive: tuple[Any, ...] | None = None

    @property
    def kind(self) -> str:
        if self.threshold is not None:
            return "threshold"
        return "positive" if self.positive is not None else "boolean"

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"{self.source} > {self.threshold:g}"
        if self.kind == "positive":
            return f"{self.source} in {list(self.positive)}"
        return f"{self.source} is true"

    def apply(self, source):
        """(labelled, label) of a column: whether each row has an outcome, and the outcome as pandas Int8 (NA
        where there is none)."""
        import numpy as np
        import pandas as pd

        labelled = source.notna()
        if self.kind == "threshold":
            hit = np.where(labelled, pd.to_numeric(source, errors="coerce") > self.threshold, False)
        elif self.kind == "positive":
            numbers = [v for v in self.positive if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if pd.api.types.is_numeric_dtype(source) and len(numbers) == len(self.positive):
                hit = source.isin(numbers).fillna(False).to_numpy(dtype=bool)  # 1 and 1.0 alike
            else:
                wanted = {str(v) for v in self.positive}
                hit = source.astype("string").isin(wanted).fillna(False).to_numpy(dtype=bool)
        else:
            hit = source.astype("boolean").fillna(False).to_numpy(dtype=bool)
        out = pd.Series(pd.array(np.asarray(hit, dtype="int8"), dtype="Int8"), index=source.index)
        out[~labelled] = pd.NA
        return labelled.astype(bool), out


@dataclass(frozen=True)
class Join:
    """Rows of ``dataset`` joined by the columns ``by`` (the same names on both sides) to give features."""

    dataset: str
    by: tuple[str, ...]


@dataclass(frozen=True)
class ModelSpec:
    """One declared model, and the names derived from it."""

    name: str
    dataset: str
    key: tuple[str, ...]
    label: Label
    joins: tuple[Join, ...] = ()
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)
    score: str = "score"
    rows: str = "rows"
    key_field: str = "key"
    date_field: str = "key_date"  # the prediction log's column of the row's date (its partition)
    experiment: str = ""
    dags: dict[str, str] = field(default_factory=dict)  # its DAGs' ids by role (train, deploy, monitor)
    lake: str = ""  # the folder of its places in the lake ("": the root); core.layout asks here

    @property
    def join(self) -> Join | None:
        """The joined data set (one at most today)."""
        return self.joins[0] if self.joins else None

    @property
    def row_name(self) -> str:
        """One entry of a batch's list, in words: ``api.rows`` less a plural s (``flights``: ``flight``)."""
        r = self.rows
        return r[:-1] if len(r) > 1 and r.endswith("s") and not r.endswith("ss") else r

    @property
    def row_type(self) -> str:
        """The request body of one entry in the OpenAPI document: ``row_name`` in CamelCase (``Flight``)."""
        name = "".join(part.capitalize() for part in self.row_name.split("_"))
        return (
            name
            if name not in ("Batch", "Prediction", "Predictions", "Message", "Health", "Versions")
            else f"{name}Row"
        )

    @property
    def title(self) -> str:
        """The model in titles: its name in words (``flight_delay``: ``Flight delay``)."""
        return self.name.replace("_", " ").replace("-", " ").capitalize()

    @property
    def registered_name(self) -> str:
        """The registry's model name: ``MLOPS_MODEL_NAME`` when set (a deployment's or a test's own), else the
        declared name."""
        return os.environ.get("MLOPS_MODEL_NAME") or self.name

    def after_event(self, known_after: frozenset[str]) -> frozenset[str]:
        """Known only after the event: never a feature (the data set's ``after_event`` columns, with curation's
        own: ``DatasetSpec.after_event``), and the label and its source."""
        return frozenset(known_after | {self.label.name, self.label.source})


def _where(path, model: str, key: str) -> str:
    return f"{path}: model {model!r}, {key}"


def _parse_label(raw: Any, where: str, columns: dict) -> Label:
    if isinstance(raw, str):
        raw = {"source": raw}
    if not isinstance(raw, dict) or "source" not in raw:
        raise ValueError(f"{where}: label needs a source column, e.g. {{source: arr_delay, threshold: 15}}")
    unknown = set(raw) - _LABEL_KEYS
    if unknown:
        raise ValueError(f"{where}: label has unknown keys {sorted(unknown)}; known: {sorted(_LABEL_KEYS)}")
    source = str(raw["source"])
    if source not in columns:
        raise ValueError(f"{where}: label source {source!r} is not a declared column")
    if "threshold" in raw and "positive" in raw:
        raise ValueError(f"{where}: label takes a threshold or a set of positive values, not both")
    kind = columns[source].type
    threshold = raw.get("threshold")
    positive = raw.get("positive")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"{where}: label threshold must be a number, got {threshold!r}")
        if kind not in _NUMBER_TYPES:
            raise ValueError(f"{where}: a threshold label needs a number column; {source!r} is {kind}")
    elif positive is not None:
        if not isinstance(positive, list) or not positive:
            raise ValueError(f"{where}: label positive must be a non-empty list of values, got {positive!r}")
    elif kind != "bool":
        raise ValueError(
            f"{where}: label source {source!r} is {kind}: give a threshold (a number above it is positive) or "
            f"positive values (one of them is positive); only a bool column needs neither. The outcome is binary."
        )
    name = str(raw.get("name", "label"))
    if name in columns and name != source:
        raise ValueError(f"{where}: label name {name!r} is a declared column of the data set: choose another name")
    return Label(
        source=source,
        name=name,
        threshold=float(threshold) if threshold is not None else None,
        positive=tuple(positive) if positive is not None else None,
    )


def parse_model(raw: Any, datasets: dict, path) -> ModelSpec:
    """One entry of the ``models:`` list, checked against the declared data sets."""
    if not isinstance(raw, dict) or not raw.get("name"):
        raise ValueError(f"{path}: each entry of models: is a mapping with a name, got {raw!r}")
    name = str(raw["name"])
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise ValueError(f"{path}: model {name!r} has unknown keys {sorted(unknown)}; known: {sorted(_MODEL_KEYS)}")
    if raw.get("dataset") not in datasets:
        raise ValueError(
            f"{_where(path, name, 'dataset')}: {raw.get('dataset')!r} is not a declared data set; "
            f"declared: {sorted(datasets)}"
        )
    ds = datasets[raw["dataset"]]
    key = tuple(raw.get("key") or ds.key)
    missing = [c for c in key if c not in ds.columns]
    if missing:
        raise ValueError(f"{_where(path, name, 'key')}: {missing} are not columns of data set {ds.name!r}")
    undated = [c for c in ds.date_columns.values() if c not in key]
    if undated:
        raise ValueError(
            f"{_where(path, name, 'key')}: {list(key)} lacks the date columns {undated} of data set {ds.name!r}: "
            "a row's key starts with its date (the prediction log and the outcomes are found by it)"
        )
    if "label" not in raw:
        raise ValueError(f"{_where(path, name, 'label')}: a model needs a label (its binary outcome)")
    label = _parse_label(raw["label"], _where(path, name, "label"), ds.columns)
    joins = []
    for i, j in enumerate(raw.get("joins") or []):
        where = _where(path, name, f"joins[{i}]")
        if not isinstance(j, dict) or set(j) != {"dataset", "by"}:
            raise ValueError(f"{where}: a join is {{dataset: <name>, by: [<columns>]}}, got {j!r}")
        if j["dataset"] not in datasets:
            raise ValueError(f"{where}: {j['dataset']!r} is not a declared data set; declared: {sorted(datasets)}")
        by = tuple(j["by"])
        for side in (ds, datasets[j["dataset"]]):
            absent = [c for c in by if c not in side.columns]
            if absent:
                raise ValueError(f"{where}: by {absent}: not columns of data set {side.name!r}")
        joins.append(Join(j["dataset"], by))
    if len(joins) > 1:
        raise ValueError(f"{_where(path, name, 'joins')}: one joined data set at most (got {len(joins)})")
    features = {k: tuple(v) for k, v in (raw.get("features") or {}).items()}
    if set(features) - {"numeric", "categorical"}:
        raise ValueError(f"{_where(path, name, 'features')}: 'numeric' and 'categorical' lists only")
    api = raw.get("api") or {}
    if set(api) - _API_KEYS:
        raise ValueError(f"{_where(path, name, 'api')}: unknown keys {sorted(set(api) - _API_KEYS)}")
    spec = ModelSpec(
        name=name,
        dataset=ds.name,
        key=key,
        label=label,
        joins=tuple(joins),
        features=features,
        score=str(raw.get("score", "score")),
        rows=str(api.get("rows", "rows")),
        key_field=str(api.get("key", "key")),
        date_field=str(api.get("date") or _date_field(str(api.get("key", "key")))),
        experiment=str(raw.get("experiment") or name),
        dags=_dags(raw.get("dags"), name, _where(path, name, "dags")),
        lake=_lake(raw.get("lake", f"models/{name}"), _where(path, name, "lake")),
    )
    fields = (
        ("score", spec.score),
        ("api.rows", spec.rows),
        ("api.key", spec.key_field),
        ("api.date", spec.date_field),
    )
    for what, value in fields:
        if not value.isidentifier():
            raise ValueError(f"{_where(path, name, what)}: {value!r} is not a valid field name")
    # the prediction log holds the key, the date, the score and the request's columns side by side
    taken = {c: "a column of the prediction log" for c in LOG_COLUMNS}
    for other in (ds.name, *(j.dataset for j in joins)):
        taken |= {c: f"a column of {other}" for c in datasets[other].columns}
    for what, value in fields[2:]:
        if value in taken:
            raise ValueError(f"{_where(path, name, what)}: {value!r} is already {taken[value]}: choose another name")
    if spec.key_field == spec.date_field:
        raise ValueError(f"{_where(path, name, 'api.date')}: {spec.date_field!r} is api.key's name too")
    return spec


def _date_field(key_field: str) -> str:
    """The log's date column when undeclared: the key field's name, less a trailing ``_key``, then ``_date``."""
    return (key_field[: -len("_key")] if key_field.endswith("_key") and key_field != "_key" else key_field) + "_date"


def _lake(raw: Any, where: str) -> str:
    """The model's folder in the lake: ``""`` (the root) or ``/``-separated plain folder names, none of them a
    data set zone's or a model place's name (so that no two models' places, nor a model's and the data's, mix)."""
    from .places import MODEL_PLACES, ZONES

    if not isinstance(raw, str):
        raise ValueError(f'{where}: a folder in the lake (a string, "" for its root), got {raw!r}')
    parts = raw.split("/") if raw else []
    for part in parts:
        if not _SEGMENT.match(part) or part in ZONES or part in MODEL_PLACES:
            raise ValueError(
                f"{where}: {raw!r}: each folder is a plain name (letters, digits, _ . -), not one of "
                f"{[*ZONES, *MODEL_PLACES]}; got {part!r}"
            )
    return raw


def _dags(raw: Any, name: str, where: str) -> dict[str, str]:
    """The model's DAG ids: the declared ones, ``<role>_<name>`` for a role not declared."""
    raw = raw or {}
    if not isinstance(raw, dict) or set(raw) - set(DAG_ROLES):
        raise ValueError(f"{where}: a mapping of {list(DAG_ROLES)} to DAG ids, got {raw!r}")
    out = {role: str(raw.get(role) or f"{role}_{name}") for role in DAG_ROLES}
    bad = {role: d for role, d in out.items() if not _DAG_ID.match(d)}
    if bad:
        raise ValueError(f"{where}: {bad} are not DAG ids (letters, digits, '_', '.', '-')")
    return out


def parse_models(raw: Any, datasets: dict, path) -> dict[str, ModelSpec]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: models: is a list with at least one model")
    out: dict[str, ModelSpec] = {}
    for entry in raw:
        spec = parse_model(entry, datasets, path)
        if spec.name in out:
            raise ValueError(f"{path}: model {spec.name!r} is declared twice")
        taken = {d for m in out.values() for d in m.dags.values()} & set(spec.dags.values())
        if taken:
            raise ValueError(f"{path}: model {spec.name!r}: DAG ids {sorted(taken)} belong to another model")
        shared = [m.name for m in out.values() if m.lake == spec.lake]
        if shared:
            raise ValueError(
                f"{_where(path, spec.name, 'lake')}: {spec.lake!r} is model {shared[0]!r}'s folder too: each model's "
                "places are its own"
            )
        out[spec.name] = spec
    return out
