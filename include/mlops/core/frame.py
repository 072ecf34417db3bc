"""The model frame: what every stage that scores a model reads, from the declaration (``core.schema``). The model's
curated data set over a window of days, joined with its declared source (flights with that hour's weather at the
origin), and encoded with a model version's ``FeatureSpec`` (its features, their order, its category codes).
Training builds its training set from it; the gate, the canary, monitoring and the service score with it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import layout, schema
from .lake import Lake, as_date


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


def load_window(lake: Lake, end: dt.date | str, days: int) -> tuple[pd.DataFrame, pd.DataFrame, list[dt.date]]:
    """The model's curated data set and its joined one (flights and weather) of the ``days`` curated dates up to
    ``end`` (missing dates are skipped; no joined data set: an empty frame)."""
    end = as_date(end)
    m = schema.model()
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
