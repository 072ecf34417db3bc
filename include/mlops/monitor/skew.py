"""Training/serving skew: do the features a client sends the prediction service match those ingestion curates for
the same rows?

The model is judged and retrained on the curated rows (flights joined with the weather observed at the origin), but
it scores what the client sends. A client that sends the weather forecast instead of the observation, a stale
distance, or no weather at all is scored on other inputs than those: the scores, the live performance and the next
training set no longer describe the same model. The rollout's score agreement rescores the logged request fields
(it checks the serving path); this compares those fields with curation's.

``compare`` joins the served rows (the prediction log, each row once as ``predictions.predictions`` gives it, with the
request fields it kept) with the curated rows by the model's key, and per feature the model uses that both sides
hold (event-derived features are computed by the service and by training alike, so they are left out) counts the
rows whose values differ: numbers beyond a relative tolerance of 1e-6 (absolute 1e-9), categories as text; both
missing is the same value, one side missing is a difference. A feature whose share of differing rows reaches
``max_mismatch`` is skewed; the signal ``serving_skew`` is up when one is, on at least ``min_rows`` rows. It alerts
(Slack, from ``monitor_model``'s report task) and never retrains: retraining on curated data does not fix a client.

Pure functions of data frames: no lake, no Airflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

REL_TOL = 1e-6
ABS_TOL = 1e-9


def model_features(m: Any = None) -> tuple[list[str], list[str]]:
    """The model's numeric and categorical features that a request can carry: those of the declaration
    (``schema.features``) less the event-derived ones (the weekday, the hour: computed from the event time)."""
    from ..core import schema

    m = m if m is not None else schema.model()
    f = schema.features(model=m)
    derived = set(schema.dataset(m.dataset).derived)
    return [c for c in f.numeric if c not in derived], [c for c in f.categorical if c not in derived]


def _numbers(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s.astype("object"), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _text(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))  # 3.0 read back from a column with holes is the category 3
    return str(v)


def numeric_mismatch(served: pd.Series, curated: pd.Series) -> tuple[np.ndarray, float]:
    """Per row whether the two values differ, and the mean absolute difference where both are there (NaN when
    never)."""
    a, b = _numbers(served), _numbers(curated)
    na_a, na_b = np.isnan(a), np.isnan(b)
    both = ~na_a & ~na_b
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        tol = np.maximum(REL_TOL * np.maximum(np.abs(a), np.abs(b)), ABS_TOL)
        far = both & (diff > tol)  # inf against inf: NaN difference, the same value
    differ = (na_a != na_b) | far
    finite = both & np.isfinite(diff)
    mad = float(diff[finite].mean()) if finite.any() else float("nan")
    return differ, mad


def categorical_mismatch(served: pd.Series, curated: pd.Series) -> np.ndarray:
    """Per row whether the two categories differ, compared as text."""
    a, b = served.astype("object"), curated.astype("object")
    na_a, na_b = a.isna().to_numpy(), b.isna().to_numpy()
    ta = np.array([_text(v) for v in a.to_numpy()], dtype=object)
    tb = np.array([_text(v) for v in b.to_numpy()], dtype=object)
    return (na_a != na_b) | (~na_a & ~na_b & (ta != tb))


def compare(
    served: pd.DataFrame,
    curated: pd.DataFrame,
    *,
    key: str,
    numeric: list[str],
    categorical: list[str],
    max_mismatch: float | None,
    min_rows: int,
) -> dict[str, Any]:
    """The skew of the served rows' logged request fields against the curated rows of the same keys.

    ``rows``: the served rows curation knows that carry request fields (each key once, its first row);
    ``unmatched``: served rows with no curated row (a quarantined day, a key curation never saw); ``unlogged``:
    served rows without any request field (written before the log kept them). Per feature (numeric first, in the
    model's order): ``compared`` rows, ``mismatch`` (their share that differ), ``mean_abs_diff`` (numeric only,
    where both sides have a value). ``skewed``: the features whose mismatch reaches ``max_mismatch`` (none when
    it is None: reported, not judged); ``judged``: at least ``min_rows`` rows."""
    kinds = {c: "numeric" for c in numeric} | {c: "categorical" for c in categorical if c not in numeric}
    names = [c for c in kinds if c in served.columns and c in curated.columns and c != key]
    s = served.drop_duplicates(key, keep="first") if key in served.columns else served.iloc[0:0]
    unlogged = int((~s[names].notna().any(axis=1)).sum()) if names else int(len(s))
    if names:
        s = s[s[names].notna().any(axis=1).to_numpy()]
    else:
        s = s.iloc[0:0]
    c = curated.drop_duplicates(key, keep="first") if key in curated.columns else curated.iloc[0:0]
    known = s[key].isin(c[key]).to_numpy() if len(s) else np.zeros(0, dtype=bool)
    joined = s.loc[known, [key, *names]].merge(c[[key, *names]], on=key, how="inner", suffixes=("_served", ""))
    n = int(len(joined))
    features = []
    for name in names:
        served_col, curated_col = joined[name + "_served"], joined[name]
        if kinds[name] == "numeric":
            differ, mad = numeric_mismatch(served_col, curated_col)
        else:
            differ, mad = categorical_mismatch(served_col, curated_col), None
        features.append(
            {
                "feature": name,
                "kind": kinds[name],
                "compared": n,
                "mismatch": float(differ.mean()) if n else float("nan"),
                "differ": int(differ.sum()),
                "mean_abs_diff": mad,
            }
        )
    skewed = [
        f["feature"]
        for f in features
        if max_mismatch is not None and f["mismatch"] == f["mismatch"] and f["mismatch"] >= max_mismatch
    ]
    return {
        "rows": n,
        "served": int(len(served)),
        "unmatched": int((~known).sum()),
        "unlogged": unlogged,
        "features": features,
        "skewed": skewed,
        "judged": n >= min_rows,
        "max_mismatch": max_mismatch,
        "min_rows": min_rows,
    }


def is_up(section: dict[str, Any]) -> bool:
    """The ``serving_skew`` signal: judged, and a feature's mismatch reached ``max_mismatch``."""
    return bool(section.get("judged") and section.get("skewed"))


def alert(report: dict[str, Any], rows: str = "rows") -> tuple[str, str, dict[str, Any]]:
    """The Slack alert of a report whose ``serving_skew`` is up: title, detail, fields (``rows``: the model's
    rows in words, ``flights``)."""
    s = report["skew"]
    worst = sorted((f for f in s["features"] if f["feature"] in s["skewed"]), key=lambda f: -(f["mismatch"] or 0))
    lines = [
        f"{f['feature']}: {f['mismatch']:.1%} of {f['compared']} {rows} differ"
        + (f" (mean abs diff {f['mean_abs_diff']:.4g})" if f.get("mean_abs_diff") is not None else "")
        for f in worst
    ]
    title = f"Training/serving skew on model v{report['champion']}: {', '.join(s['skewed'])}"
    detail = (
        "\n".join(lines[:8]) + f"\nthe features clients send differ from those curated for the same {rows} (threshold "
        f"{s['max_mismatch']:.1%}); an alert only: retraining on curated data does not fix a client"
    )
    fields = {
        f"{rows} compared": s["rows"],
        "window": " .. ".join(report.get("window") or []),
        "report": report.get("report"),
    }
    return title, detail, fields
