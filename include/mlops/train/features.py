"""The training set: curated flights joined with that hour's weather at the origin, features known before
departure only, a time-ordered split, and a stable fingerprint of exactly what was used.

Leakage: ``dep_time``, ``dep_delay``, ``arr_time``, ``air_time`` and ``arr_delay`` are known only after the
flight; they never become features (``LEAKING`` below, enforced by ``build``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core.lake import Lake, as_date

LEAKING = frozenset({"dep_time", "dep_delay", "arr_time", "air_time", "arr_delay", "label", "is_labelled"})
NUMERIC = ["month", "event_weekday", "event_hour_utc", "sched_dep_time", "sched_arr_time", "distance",
           "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
CATEGORICAL = ["carrier", "origin", "dest"]
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
KEY = ["year", "month", "day", "carrier", "flight", "origin"]


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
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
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
    frame: pd.DataFrame          # flight_key, batch_date, features, label; labelled rows only, ordered by date and key
    spec: FeatureSpec
    split: dict[str, list[str]]  # train / validation / test -> dates
    fingerprint: str

    def part(self, name: str) -> pd.DataFrame:
        dates = set(self.split[name])
        return self.frame[self.frame["batch_date"].astype(str).isin(dates)]


def load_window(lake: Lake, end: dt.date | str, days: int) -> tuple[pd.DataFrame, pd.DataFrame, list[dt.date]]:
    """Curated flights and weather of the ``days`` curated dates up to ``end`` (missing dates are skipped)."""
    end = as_date(end)
    dates = [d for d in lake.partitions("curated", "flights") if end - dt.timedelta(days=days) < d <= end]
    if not dates:
        raise ValueError(f"no curated flights in the {days} days up to {end} at {lake.uri('curated', 'flights')}")
    flights = pd.concat([lake.read_parquet(Lake.partition("curated", "flights", d), "part-00000.parquet")
                         for d in dates], ignore_index=True)
    wdates = [d for d in lake.partitions("curated", "weather")
              if dates[0] - dt.timedelta(days=1) <= d <= dates[-1] + dt.timedelta(days=1)]
    weather = (pd.concat([lake.read_parquet(Lake.partition("curated", "weather", d), "part-00000.parquet")
                          for d in wdates], ignore_index=True) if wdates else pd.DataFrame())
    return flights, weather, dates


def flight_key(df: pd.DataFrame) -> pd.Series:
    """A flight's stable identity, e.g. ``2013-01-05/UA/1545/EWR`` (the curated data's unique key)."""
    date = (df["year"].astype(str) + "-" + df["month"].astype(int).map("{:02d}".format) + "-"
            + df["day"].astype(int).map("{:02d}".format))
    return date + "/" + df["carrier"].astype(str) + "/" + df["flight"].astype(str) + "/" + df["origin"].astype(str)


def join_weather(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    """Each flight with the weather observed at its origin in its scheduled departure hour (UTC)."""
    if weather.empty:
        out = flights.copy()
        for c in WEATHER:
            out[c] = np.nan
        return out
    w = weather[["origin", "time_hour"] + WEATHER].drop_duplicates(["origin", "time_hour"])
    return flights.merge(w, on=["origin", "time_hour"], how="left", validate="many_to_one")


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
    return {"train": iso[:n_train], "validation": iso[n_train:n_train + n_val], "test": iso[n_train + n_val:]}


def fingerprint(frame: pd.DataFrame, spec: FeatureSpec, split: dict[str, list[str]]) -> str:
    """sha256 over the exact rows (keys, features, label, in order), the feature schema and the split."""
    h = hashlib.sha256()
    h.update(json.dumps({"spec": spec.to_dict(), "split": split}, sort_keys=True).encode())
    cols = ["flight_key"] + spec.columns + [spec.label]
    h.update(pd.util.hash_pandas_object(frame[cols], index=False).values.tobytes())
    return h.hexdigest()


def build(flights: pd.DataFrame, weather: pd.DataFrame, numeric: list[str] | None = None,
          categorical: list[str] | None = None, validation_share: float = 0.15,
          test_share: float = 0.15) -> TrainingSet:
    numeric = list(numeric or NUMERIC)
    categorical = list(categorical or CATEGORICAL)
    leaks = LEAKING & set(numeric + categorical)
    if leaks:
        raise ValueError(f"features known only after departure cannot be used: {sorted(leaks)}")
    df = join_weather(flights[flights["is_labelled"]], weather)
    df = df.sort_values(["batch_date"] + KEY, kind="mergesort").reset_index(drop=True)
    dates = sorted({as_date(d) for d in df["batch_date"]})
    split = time_split(dates, validation_share, test_share)
    train_dates = set(split["train"])
    train = df[df["batch_date"].astype(str).isin(train_dates)]
    categories = {c: sorted(train[c].dropna().astype(str).unique().tolist()) for c in categorical}
    spec = FeatureSpec(numeric=numeric, categorical=categorical, categories=categories)
    frame = pd.concat([flight_key(df).rename("flight_key"), df["batch_date"], spec.encode(df),
                       df["label"].astype("int8").rename("label")], axis=1)
    return TrainingSet(frame=frame, spec=spec, split=split, fingerprint=fingerprint(frame, spec, split))
