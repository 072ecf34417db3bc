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
from dataclasses import dataclass

import pandas as pd

from ..core import schema
from ..core.frame import FeatureSpec, join_sources
from ..core.lake import as_date
from ..core.schema import model as declared_model


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # the key, batch_date, features, the label; labelled rows only, ordered by date and key
    spec: FeatureSpec
    split: dict[str, list[str]]  # train / validation / test -> dates
    fingerprint: str

    def part(self, name: str) -> pd.DataFrame:
        dates = set(self.split[name])
        return self.frame[self.frame["batch_date"].astype(str).isin(dates)]


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
