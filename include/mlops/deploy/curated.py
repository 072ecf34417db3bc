"""The rows the rollout judges: served flights with the features curation made for them (``with_curated_features``),
and the event-time features a model scores them with (``features``). Read by the paired comparison (``canary``);
the stages' score agreement (``signals``) derives the event-time features of the inputs the service logged."""

from __future__ import annotations

import pandas as pd

from ..core.frame import join_sources, load_window
from ..core.lake import Lake, as_date
from ..core.schema import dataset, model, row_key


def with_curated_features(lake: Lake, served: pd.DataFrame) -> pd.DataFrame:
    """The served flights with the features ingestion curated for them (flights joined with their weather) in
    place of those the client sent: what a client posts decides what it was answered, never the evidence the
    arms are compared on. The arm, version and served score stay as logged. A served flight that curation does
    not know (a key the upstream never delivered) is dropped."""
    if served.empty:
        return served
    dates = sorted({as_date(d) for d in served["date"]})
    flights, weather, _ = load_window(lake, dates[-1], (dates[-1] - dates[0]).days + 1)
    curated = join_sources(flights, weather)
    m = model()
    curated = curated.assign(**{m.key_field: row_key(curated, m).to_numpy()})
    keep = [c for c in served.columns if c not in curated.columns or c in (m.key_field, m.label.name, "date")]
    return served[keep].merge(
        curated.drop(columns=[c for c in (m.label.name, "date") if c in curated.columns]),
        on=m.key_field,
        how="inner",
        validate="one_to_one",
    )


def features(df: pd.DataFrame) -> pd.DataFrame:
    """The event-time features curation derives, from the scored data set's declared event time (none: as is)."""
    return dataset(model().dataset).event_features(df)
