"""The prediction log, as monitoring and the canary read it: what the service logged under
``predictions/date=<data date>/``, each row (a flight) once by its first logged prediction, joined by its key with
the outcomes that ingestion brought in later (the model's curated data set). The challenger's shadow predictions
(arm ``shadow``) are in the same log, read apart (``predictions(..., shadow=True)``). Written by ``serve``; read by
``deploy`` and ``monitor``. The key column is named by the model's declaration (``api.key``: ``flight_key``), and
so is the outcome (``label.name``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

from . import layout
from .lake import Lake, as_date
from .schema import model, row_key

LOGGED = ["arm", "version", "score", "predicted_at"]  # after the key: what the service logs of each answer
# the arm of a prediction the challenger made in the shadow (never returned to the client): the service logs it
# next to the served ones, with its own request id and time; readers take served rows unless they ask for these
SHADOW = "shadow"


def prediction_columns() -> list[str]:
    """The prediction log's columns: the model's key field, then ``LOGGED``."""
    return [model().key_field, *LOGGED]


def prediction_dates(lake: Lake) -> list[dt.date]:
    """Flight dates with logged predictions."""
    return layout.partitions(lake, layout.prediction_log())


def predictions(
    lake: Lake,
    dates: Iterable[dt.date | str],
    versions: set[str] | None = None,
    since: str | None = None,
    *,
    shadow: bool = False,
) -> pd.DataFrame:
    """The served predictions of the given flight dates (only those partitions are read): each flight once, by its
    first logged prediction. A later request for the same flight (a re-post, perhaps with other features) is
    still in the log, but never replaces the first answer in monitoring or a canary's evidence. ``versions`` and
    ``since`` then keep only the flights whose first prediction came from those versions, at or after ``since``.

    Predictions the challenger made in the shadow (arm ``SHADOW``: never returned to a client) are not served
    answers: they are left out, and never count as a flight's first prediction. ``shadow=True`` reads only them
    instead: each flight once, by its first shadow prediction, with the same ``versions`` and ``since`` filters.
    """
    parts = []
    for d in sorted({as_date(x) for x in dates}):
        folder = layout.predictions(d)
        for f in lake.ls(folder):
            parts.append(lake.read_parquet(folder, f))
    if not parts:
        return pd.DataFrame(columns=prediction_columns())
    df = pd.concat(parts, ignore_index=True)
    df = df[(df["arm"].astype(str) == SHADOW).to_numpy() == shadow].reset_index(drop=True)
    at = pd.to_datetime(df["predicted_at"], utc=True, format="ISO8601")
    order = np.lexsort((np.arange(len(df)), at.to_numpy()))  # by time; ties keep log order
    first = ~df[model().key_field].iloc[order].duplicated(keep="first")
    keep = order[first.to_numpy()]
    df, at = df.iloc[keep], at.iloc[keep]
    mask = np.ones(len(df), dtype=bool)
    if versions is not None:
        mask &= df["version"].astype(str).isin(versions).to_numpy()
    if since is not None:
        mask &= (at >= pd.Timestamp(since)).to_numpy()
    return df[mask]


def labels_of(flights: pd.DataFrame) -> pd.DataFrame:
    """key, label, date of the labelled rows of the model's curated data set (named as the model declares)."""
    m = model()
    cur = flights[flights["is_labelled"].astype(bool)]
    return pd.DataFrame(
        {
            m.key_field: row_key(cur, m).to_numpy(),
            m.label.name: cur[m.label.name].astype(int).to_numpy(),
            "date": cur["batch_date"].astype(str).to_numpy(),
        }
    )


def outcomes(lake: Lake, dates: Iterable[dt.date | str]) -> pd.DataFrame:
    """key, label, date of the labelled curated rows of those dates (missing dates skipped)."""
    m = model()
    parts = []
    for d in sorted({as_date(x) for x in dates}):
        where = layout.curated_file(m.dataset, d)
        if lake.exists(*where):
            parts.append(labels_of(lake.read_parquet(*where)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[m.key_field, m.label.name, "date"])


def joined(
    lake: Lake,
    dates: Iterable[dt.date | str],
    versions: set[str] | None = None,
    since: str | None = None,
    *,
    shadow: bool = False,
) -> pd.DataFrame:
    """Logged predictions of those flight dates that have an outcome, with their label (``predictions``: the
    served ones, or with ``shadow=True`` those made in the shadow)."""
    dates = list(dates)
    return join(predictions(lake, dates, versions, since, shadow=shadow), outcomes(lake, dates))


def join(preds: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    m = model()
    if preds.empty:
        return preds.assign(**{m.label.name: pd.Series(dtype=int), "date": pd.Series(dtype=str)})
    return preds.merge(labels, on=m.key_field, how="inner")
