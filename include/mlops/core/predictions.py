"""The prediction log, as monitoring and the canary read it: what the service logged under
``predictions/date=<flight date>/``, each flight once by its first logged prediction, joined by flight key with the
outcomes that ingestion brought in later (curated flights). Written by ``serve``; read by ``deploy`` and
``monitor``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

from . import layout
from .lake import Lake, as_date
from .schema import MODEL_DATASET, flight_key

PREDICTION_COLUMNS = ["flight_key", "arm", "version", "score", "predicted_at"]


def prediction_dates(lake: Lake) -> list[dt.date]:
    """Flight dates with logged predictions."""
    return layout.partitions(lake, layout.PREDICTIONS)


def predictions(
    lake: Lake, dates: Iterable[dt.date | str], versions: set[str] | None = None, since: str | None = None
) -> pd.DataFrame:
    """The prediction log of the given flight dates (only those partitions are read): each flight once, by its
    first logged prediction. A later request for the same flight (a re-post, perhaps with other features) is
    still in the log, but never replaces the first answer in monitoring or a canary's evidence. ``versions`` and
    ``since`` then keep only the flights whose first prediction came from those versions, at or after ``since``.
    """
    parts = []
    for d in sorted({as_date(x) for x in dates}):
        folder = layout.predictions(d)
        for f in lake.ls(folder):
            parts.append(lake.read_parquet(folder, f))
    if not parts:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    df = pd.concat(parts, ignore_index=True)
    at = pd.to_datetime(df["predicted_at"], utc=True, format="ISO8601")
    order = np.lexsort((np.arange(len(df)), at.to_numpy()))  # by time; ties keep log order
    first = ~df["flight_key"].iloc[order].duplicated(keep="first")
    keep = order[first.to_numpy()]
    df, at = df.iloc[keep], at.iloc[keep]
    mask = np.ones(len(df), dtype=bool)
    if versions is not None:
        mask &= df["version"].astype(str).isin(versions).to_numpy()
    if since is not None:
        mask &= (at >= pd.Timestamp(since)).to_numpy()
    return df[mask]


def labels_of(flights: pd.DataFrame) -> pd.DataFrame:
    """flight_key, label, date of the labelled rows of curated flights."""
    cur = flights[flights["is_labelled"].astype(bool)]
    return pd.DataFrame(
        {
            "flight_key": flight_key(cur).to_numpy(),
            "label": cur["label"].astype(int).to_numpy(),
            "date": cur["batch_date"].astype(str).to_numpy(),
        }
    )


def outcomes(lake: Lake, dates: Iterable[dt.date | str]) -> pd.DataFrame:
    """flight_key, label, date of the labelled curated flights of those dates (missing dates skipped)."""
    parts = []
    for d in sorted({as_date(x) for x in dates}):
        where = layout.curated_file(MODEL_DATASET, d)
        if lake.exists(*where):
            parts.append(labels_of(lake.read_parquet(*where)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["flight_key", "label", "date"])


def joined(
    lake: Lake, dates: Iterable[dt.date | str], versions: set[str] | None = None, since: str | None = None
) -> pd.DataFrame:
    """Logged predictions of those flight dates that have an outcome, with their label."""
    dates = list(dates)
    return join(predictions(lake, dates, versions, since), outcomes(lake, dates))


def join(preds: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    if preds.empty:
        return preds.assign(label=pd.Series(dtype=int), date=pd.Series(dtype=str))
    return preds.merge(labels, on="flight_key", how="inner")
