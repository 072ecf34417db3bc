import datetime as dt

import numpy as np
import pandas as pd
import pytest

from include.mlops.core import schema
from include.mlops.core.schema import dataset
from include.mlops.ingest.ingestion import transform
from include.mlops.simulate.upstream import day_table
from include.mlops.train import features as F


@pytest.fixture(scope="module")
def curated():
    days = [dt.date(2013, 1, d) for d in range(1, 8)]
    fl = pd.concat([transform(day_table("flights", d), dataset("flights"), d) for d in days], ignore_index=True)
    we = pd.concat([transform(day_table("weather", d), dataset("weather"), d) for d in days], ignore_index=True)
    return fl, we


def test_no_feature_is_known_only_after_departure(curated):
    ts = F.build(*curated)
    assert not (dataset("flights").after_event & set(ts.spec.columns))
    assert {"dep_delay", "arr_delay", "air_time", "label", "is_labelled"} <= dataset("flights").after_event
    with pytest.raises(ValueError, match="known only after the event.*dep_delay"):
        F.build(*curated, numeric=schema.features().numeric + ["dep_delay"])


def test_only_labelled_rows_and_weather_joined_on_origin_and_hour(curated):
    fl, we = curated
    ts = F.build(fl, we)
    assert len(ts.frame) == int(fl["is_labelled"].sum())
    row = ts.frame.iloc[100]
    date, carrier, flight, origin = row["flight_key"].split("/")
    src = fl[
        (fl["carrier"] == carrier)
        & (fl["flight"] == int(flight))
        & (fl["origin"] == origin)
        & (fl["batch_date"].astype(str) == date)
    ].iloc[0]
    w = we[(we["origin"] == origin) & (we["time_hour"] == src["time_hour"])]
    assert np.isclose(row["temp"], w["temp"].iloc[0])


def test_split_is_by_time_never_random(curated):
    ts = F.build(*curated)
    tr, va, te = ts.split["train"], ts.split["validation"], ts.split["test"]
    assert max(tr) < min(va) <= max(va) < min(te)
    assert sorted(tr + va + te) == sorted({str(d) for d in curated[0]["batch_date"]})
    assert set(ts.part("test")["batch_date"].astype(str)) == set(te)


def test_fingerprint_is_stable_and_sensitive(curated):
    fl, we = curated
    a, b = F.build(fl, we), F.build(fl.sample(frac=1, random_state=3), we)
    assert a.fingerprint == b.fingerprint  # same rows, any input order
    fewer = F.build(fl.iloc[10:], we)
    assert fewer.fingerprint != a.fingerprint
    other_schema = F.build(fl, we, numeric=[c for c in schema.features().numeric if c != "visib"])
    assert other_schema.fingerprint != a.fingerprint


def test_unseen_categories_encode_as_minus_one(curated):
    ts = F.build(*curated)
    x = ts.spec.encode(
        pd.DataFrame({c: [1.0] for c in ts.spec.numeric} | {"carrier": ["ZZ"], "origin": ["JFK"], "dest": ["XXX"]})
    )
    assert x["carrier"].iloc[0] == -1 and x["dest"].iloc[0] == -1
    assert x["origin"].iloc[0] == ts.spec.categories["origin"].index("JFK")
