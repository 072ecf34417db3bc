"""A small real LightGBM model registered in the real (embedded) MLflow registry, for tests that need versions
and aliases but not a trained flight model."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

TINY_NUMERIC = ["distance", "sched_dep_time"]
TINY_CATEGORICAL = ["carrier"]


def tiny_version(tmp_path, reason: str = "fault test", seed: int = 0) -> str:
    """A small real LightGBM model registered as a new version of the current MLOPS_MODEL_NAME."""
    import lightgbm as lgb

    from include.mlops.core import frame, registry
    from include.mlops.kinds import lightgbm as lightgbm_kind

    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "distance": rng.uniform(100, 3000, 2000),
            "sched_dep_time": rng.integers(500, 2300, 2000),
            "carrier": rng.choice(["AA", "UA", "DL"], 2000),
        }
    )
    spec = frame.FeatureSpec(
        numeric=TINY_NUMERIC, categorical=TINY_CATEGORICAL, categories={"carrier": ["AA", "DL", "UA"]}
    )
    y = (df["sched_dep_time"] / 2400 + rng.normal(0, 0.3, 2000) > 0.6).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(spec.encode(df)[spec.columns], label=y),
        num_boost_round=10,
    )
    path = tmp_path / f"model-{uuid.uuid4().hex[:6]}.txt"
    booster.save_model(str(path))
    reg = registry.log_training_run(
        model_path=path,
        params={"num_boost_round": 10},
        metrics={"test_auc": 0.7},
        tags={"reason": reason},
        feature_spec=spec.to_dict(),
        feature_importance={c: 1.0 for c in spec.columns},
        register_model=lightgbm_kind.register,
    )
    return reg.version


def tiny_served(version: str, seed: int = 0):
    """A small real LightGBM model on three of the request's columns, as the prediction service serves it (no
    registry): a second to train, where the contract or the counters do not depend on what a model learnt."""
    import lightgbm as lgb

    from include.mlops.core import frame
    from include.mlops.kinds import lightgbm as lightgbm_kind
    from include.mlops.serve.models import ServedModel

    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "distance": rng.uniform(100, 3000, 1000),
            "sched_dep_time": rng.integers(500, 2300, 1000),
            "carrier": rng.choice(["AA", "UA", "DL"], 1000),
        }
    )
    spec = frame.FeatureSpec(
        numeric=TINY_NUMERIC, categorical=TINY_CATEGORICAL, categories={"carrier": ["AA", "DL", "UA"]}
    )
    y = (df["sched_dep_time"] / 2400 + rng.normal(0, 0.3, len(df)) > 0.6).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(spec.encode(df)[spec.columns], label=y), num_boost_round=5)
    return ServedModel(lightgbm_kind.Model(booster, spec, version))
