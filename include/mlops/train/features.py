"""The training set: the model's curated data set joined with its declared source (flights with that hour's
weather at the origin), features known before the event only, a time-ordered split, and a stable fingerprint of
exactly what was used.

Which columns are features, which data set is joined and by what, which columns are known only after the event
(``dep_time``, ``arr_delay``, ...: never features, enforced by ``build``), the label's and the key's names all
come from the declaration (``core.schema``, ``core.models``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core import layout, schema
from ..core.lake import Lake, as_date
from ..core.schema import model as declared_model


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model and how categories map to codes (fixed per model version)."""

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    label: str = "label"

    @property
    def columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**d)

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model matrix: numeric as float32, categories as codes of this spec's vocabulary (-1 = unseen)."""
        out = pd.DataFrame(index=df.index)
        for c in self.numeric:
            out[c] = pd.to_numeric(df[c], errors="coerce").astype("float32") if c in df else np.float32(np.nan)
        for c in self.categorical:
            vocab = {v: i for i, v in enumerate(self.categories.get(c, []))}
            out[c] = df[c].astype("string").map(vocab).fillna(-1).astype("int32")
        return out


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # the key, batch_date, features, the label; labelled rows only, ordered by date and key
    spec: FeatureSpec
    split: dict[str, list[str]]  # train / validation / test -> dates
    fingerprint: str

    def part(self, name: str) -> pd.DataFrame:
        dates = set(self.split[name])
        return self.frame[self.frame["batch_date"].astype(str).isin(dates)]


def load_window(lake: Lake, end: dt.date | str, days: int) -> tuple[pd.DataFrame, pd.DataFrame, list[dt.date]]:
    """The model's curated data set and its joined one (flights and weather) of the ``days`` curated dates up to
    ``end`` (missing dates are skipped; no joined data set: an empty frame)."""
    end = as_date(end)
    m = declared_model()
    scored, joined = m.dataset, (m.join.dataset if m.join else None)
    dates = [
        d for d in layout.partitions(lake, layout.zone("curated", scored)) if end - dt.timedelta(days=days) < d <= end
    ]
    if not dates:
        raise ValueError(
            f"no curated {scored} in the {days} days up to {end} at {lake.uri(layout.zone('curated', scored))}"
        )
    flights = pd.concat([lake.read_parquet(*layout.curated_file(scored, d)) for d in dates], ignore_index=True)
    if joined is None:
        return flights, pd.DataFrame(), dates
    wdates = [
        d
        for d in layout.partitions(lake, layout.zone("curated", joined))
        if dates[0] - dt.timedelta(days=1) <= d <= dates[-1] + dt.timedelta(days=1)
    ]
    weather = (
        pd.concat([lake.read_parquet(*layout.curated_file(joined, d)) for d in wdates], ignore_index=True)
        if wdates
        else pd.DataFrame()
    )
    return flights, weather, dates


def join_sources(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    """Each flight with the weather observed at its origin in its scheduled departure hour (UTC): the declared
    join (``core.schema``: the joined data set's feature columns, by its join columns)."""
    f = schema.features()
    if not f.join_by:
        return flights
    if weather.empty:
        out = flights.copy()
        for c in f.joined:
            out[c] = np.nan
        return out
    w = weather[list(f.join_by) + f.joined].drop_duplicates(list(f.join_by))
    return flights.merge(w, on=list(f.join_by), how="left", validate="many_to_one")


def time_split(dates: list[dt.date], validation_share: float = 0.15, test_share: float = 0.15) -> dict[str, list[str]]:
    """Oldest dates train, then validation, newest test; never random. Needs at least 3 dates."""
    ds = sorted(set(dates))
    if len(ds) < 3:
        raise ValueError(f"a time split needs at least 3 dates, got {len(ds)}")
    n_test = max(1, round(len(ds) * test_share))
    n_val = max(1, round(len(ds) * validation_share))
    n_train = len(ds) - n_val - n_test
    if n_train < 1:
        n_train, n_val, n_test = len(ds) - 2, 1, 1
    iso = [d.isoformat() for d in ds]
    return {"train": iso[:n_train], "validation": iso[n_train : n_train + n_val], "test": iso[n_train + n_val :]}


def fingerprint(frame: pd.DataFrame, spec: FeatureSpec, split: dict[str, list[str]]) -> str:
    """sha256 over the exact rows (keys, features, label, in order), the feature schema and the split."""
    h = hashlib.sha256()
    h.update(json.dumps({"spec": spec.to_dict(), "split": split}, sort_keys=True).encode())
    cols = [declared_model().key_field] + spec.columns + [spec.label]
    h.update(pd.util.hash_pandas_object(frame[cols], index=False).values.tobytes())
    return h.hexdigest()


def build(
    flights: pd.DataFrame,
    weather: pd.DataFrame,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    validation_share: float = 0.15,
    test_share: float = 0.15,
) -> TrainingSet:
    m = declared_model()
    declared = schema.features(model=m)
    numeric = list(numeric or declared.numeric)
    categorical = list(categorical or declared.categorical)
    leaks = m.after_event(schema.dataset(m.dataset).after_event) & set(numeric + categorical)
    if leaks:
        raise ValueError(f"features known only after the event cannot be used: {sorted(leaks)}")
    df = join_sources(flights[flights["is_labelled"]], weather)
    key = list(m.key)
    df = df.sort_values(["batch_date"] + key, kind="mergesort").reset_index(drop=True)
    dates = sorted({as_date(d) for d in df["batch_date"]})
    split = time_split(dates, validation_share, test_share)
    train_dates = set(split["train"])
    train = df[df["batch_date"].astype(str).isin(train_dates)]
    categories = {c: sorted(train[c].dropna().astype(str).unique().tolist()) for c in categorical}
    spec = FeatureSpec(numeric=numeric, categorical=categorical, categories=categories, label=m.label.name)
    frame = pd.concat(
        [
            schema.row_key(df, m).rename(m.key_field),
            df["batch_date"],
            spec.encode(df),
            df[m.label.name].astype("int8").rename(m.label.name),
        ],
        axis=1,
    )
    return TrainingSet(frame=frame, spec=spec, split=split, fingerprint=fingerprint(frame, spec, split))
