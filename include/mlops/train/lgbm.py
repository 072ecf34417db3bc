"""LightGBM pieces shared by the single-process baseline and the Horovod ranks."""

from __future__ import annotations

from typing import Any

import pandas as pd

# what the model is, not what a run tunes (those are in params.yaml, section lgbm)
FIXED_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": ["auc", "binary_logloss"],
    "max_bin": 255,
    "seed": 7,
    "deterministic": True,
    "verbosity": -1,
}
BIN_SAMPLE_ROWS = 200_000


def params(overrides: dict[str, Any] | None = None, threads: int = 1) -> dict[str, Any]:
    """LightGBM's parameters of a run: the fixed ones, params.yaml's tunable ones, then the run's overrides."""
    from .params import load

    p = dict(FIXED_PARAMS) | load()["lgbm"]
    p.update(overrides or {})
    p["num_threads"] = int(threads)
    return p


def reference_dataset(
    sample: pd.DataFrame, features: list[str], categorical: list[str], p: dict[str, Any], label: str = "label"
):
    """The Dataset whose bin boundaries every rank shares (built from the same pooled sample everywhere)."""
    import lightgbm as lgb

    ref = lgb.Dataset(
        sample[features],
        label=sample[label],
        categorical_feature=categorical,
        params=_dataset_params(p),
        free_raw_data=False,
    )
    return ref.construct()


def dataset(
    df: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    p: dict[str, Any],
    label: str = "label",
    reference=None,
):
    import lightgbm as lgb

    return lgb.Dataset(
        df[features],
        label=df[label],
        categorical_feature=categorical,
        params=_dataset_params(p),
        reference=reference,
        free_raw_data=False,
    )


def _dataset_params(p: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "max_bin",
        "min_data_in_bin",
        "bin_construct_sample_cnt",
        "seed",
        "verbosity",
        "num_threads",
        "pre_partition",
    )
    return {k: p[k] for k in keys if k in p} | {"bin_construct_sample_cnt": BIN_SAMPLE_ROWS}


def train_single(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    p: dict[str, Any],
    num_boost_round: int,
    bin_sample: pd.DataFrame | None = None,
    label: str = "label",
):
    """The single-process baseline, binned from the same sample the distributed job uses."""
    import lightgbm as lgb

    ref = reference_dataset(bin_sample if bin_sample is not None else train, features, categorical, p, label)
    dtrain = dataset(train, features, categorical, p, label, reference=ref)
    dval = dataset(validation, features, categorical, p, label, reference=dtrain)
    return lgb.train(p, dtrain, num_boost_round=num_boost_round, valid_sets=[dval], valid_names=["validation"])
