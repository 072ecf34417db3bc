"""The reference profile of a model version: per feature the quantiles and bin shares (numeric) or category
shares (categorical) of its training rows, the score distribution and label rate on its validation days, and
its validation metrics. Built when the training set is built, completed at registration, stored as
``profile.json`` on the version's MLflow run (and in the run's training folder): monitoring compares live data
with it without rereading a training set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..train import features as F
from ..monitor import drift


def raw_features(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    """Flights with the weather at their origin and their key: the features as the service receives them."""
    df = F.join_weather(flights, weather)
    return df.assign(flight_key=F.flight_key(df).to_numpy())


def feature_profile(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in numeric:
        out[c] = drift.numeric_profile(pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
    for c in categorical:
        out[c] = drift.categorical_profile(df[c].astype("object").where(df[c].notna(), None))
    return out


def build(train_rows: pd.DataFrame, numeric: list[str], categorical: list[str], dates: list[str]) -> dict[str, Any]:
    labels = train_rows["label"].astype(float) if "label" in train_rows else pd.Series(dtype=float)
    return {"rows": int(len(train_rows)), "dates": [dates[0], dates[-1]] if dates else [],
            "features": feature_profile(train_rows, numeric, categorical),
            "label_rate": float(labels.mean()) if len(labels) else None}


def complete(profile: dict[str, Any], scores: np.ndarray, labels: np.ndarray, metrics: dict[str, float]
             ) -> dict[str, Any]:
    """Add what only the trained model knows: its score distribution and metrics on the validation days."""
    return profile | {"score": drift.numeric_profile(np.asarray(scores, dtype="float64")),
                      "validation": {k: float(v) for k, v in metrics.items()}
                      | {"label_rate": float(np.mean(labels)) if len(labels) else None}}
