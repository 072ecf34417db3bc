"""LightGBM's kind: a gradient-boosted tree ensemble (``lightgbm.Booster``), registered with MLflow's ``lightgbm``
flavour (which is also a ``python_function`` model), trained data-parallel: ``train_rank`` is one rank's work in
the Horovod job the training stage launches (``train.distributed``, ``train.launch``); ``train_single`` the same
training in one process (the baseline of the scaling benchmark). Its parameters are ``params.yaml``'s ``lgbm:``
section (``SETTINGS``) on top of ``FIXED_PARAMS``.

One row is scored through LightGBM's single-row fast path (``SingleRow``: the same trees and numbers without
building a predictor per call). It uses LightGBM's C API through ``lightgbm.basic``'s private ``_LIB``: the one
place in the project that touches a private LightGBM API (``tests/unit/test_model_kinds.py`` pins that).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import Model as _Model

if TYPE_CHECKING:
    import pandas as pd

    from ..core.frame import FeatureSpec

log = logging.getLogger(__name__)
KIND = "lightgbm"
PARAMS = "lgbm"  # its section of params.yaml
_FRACTION = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
SETTINGS: dict[str, dict[str, Any]] = {
    "learning_rate": _FRACTION,
    "num_leaves": {"type": "integer", "minimum": 2, "maximum": 4096},
    "min_data_in_leaf": {"type": "integer", "minimum": 1},
    "feature_fraction": _FRACTION,
    "bagging_fraction": _FRACTION,
    "lambda_l2": {"type": "number", "minimum": 0},
}
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


class Model(_Model):
    kind = KIND

    def __init__(self, booster: Any, spec: FeatureSpec, version: str | None = None):
        super().__init__(spec, version)
        self.booster = booster

    def predict_encoded(self, encoded: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(encoded)

    def predict_array(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """One row through the single-row fast path; more with ``threads`` LightGBM threads."""
        if len(X) == 1 and self.single_row is not None:
            return self.single_row(X)
        return self.booster.predict(X, num_threads=threads)

    @cached_property
    def single_row(self):
        try:
            return SingleRow(self.booster, len(self.spec.columns))
        except Exception:  # noqa: BLE001 - a build without the fast path
            log.info("no single-row fast path for version %s; rows go through Booster.predict", self.version)
            return None

    def feature_importance(self) -> dict[str, float]:
        gain = self.booster.feature_importance(importance_type="gain")
        return {c: round(float(g), 3) for c, g in zip(self.booster.feature_name(), gain)}


def load(uri: str, spec: FeatureSpec, version: str | None = None) -> Model:
    """A registered version (``models:/<name>/<version>``)."""
    import mlflow

    return Model(mlflow.lightgbm.load_model(uri), spec, version)


def from_staged(data: bytes, spec: FeatureSpec) -> Model:
    """The model text a training run staged."""
    import lightgbm as lgb

    return Model(lgb.Booster(model_str=data.decode()), spec)


def register(path: Path, registered_name: str):
    """Track the staged model file in the active MLflow run and register it as a new version of
    ``registered_name`` (MLflow's ``lightgbm`` flavour, loadable as ``mlflow.pyfunc``); MLflow's model info."""
    import lightgbm as lgb
    import mlflow

    return mlflow.lightgbm.log_model(
        lgb.Booster(model_file=str(path)),
        name="model",
        registered_model_name=registered_name,
        await_registration_for=60,
        pip_requirements=[f"lightgbm=={lgb.__version__}"],
    )


def params(values: dict[str, Any] | None = None, threads: int = 1) -> dict[str, Any]:
    """LightGBM's parameters of a run: the fixed ones, then the run's values of params.yaml's ``lgbm:`` section
    (the training stage resolves them: ``train.params``)."""
    p = dict(FIXED_PARAMS) | dict(values or {})
    p["num_threads"] = int(threads)
    return p


def tracked_params(values: dict[str, Any] | None = None, threads: int = 1) -> dict[str, Any]:
    """The parameters a run records."""
    return params(values, threads)


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


def fit(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: FeatureSpec,
    values: dict[str, Any],
    num_boost_round: int = 200,
    threads: int = 1,
) -> Model:
    """Trained in this process (a tuning trial: the study runs trials side by side, not ranks), with the run's
    values of params.yaml's ``lgbm:`` section, binned on the training split as one rank of the job would."""
    features = list(spec.numeric) + list(spec.categorical)
    booster = train_single(
        train, validation, features, list(spec.categorical), params(values, threads), num_boost_round, label=spec.label
    )
    return Model(booster, spec)


def train_rank(job, rank, status) -> tuple[dict[str, Any], bytes | None]:
    """One rank of the data-parallel job (``train.distributed`` runs it in each Horovod worker): its shard of the
    training set staged in the lake, bins agreed on a sample pooled from every rank, then LightGBM's data-parallel
    tree learner between the ranks. ``rank`` is the rank's place and collectives (``train.distributed.Rank``),
    ``status`` records each phase. The rank's result, and rank 0's model text (None elsewhere)."""
    import time

    import lightgbm as lgb
    import pandas as pd

    from ..core import layout
    from ..core.lake import Lake

    t0 = time.time()
    lake = Lake(job.lake_url, **job.storage_options)
    meta = lake.read_json(job.training_set, layout.TRAINING_SPEC)
    if meta["shards"] != rank.size:
        raise ValueError(f"rank {rank.rank}: the training set has {meta['shards']} shards for {rank.size} workers")
    features = meta["spec"]["numeric"] + meta["spec"]["categorical"]
    categorical = meta["spec"]["categorical"]
    label = meta["spec"].get("label", "label")
    shard = lake.read_parquet(job.training_set, *layout.training_shard(rank.rank))
    validation = lake.read_parquet(job.training_set, layout.TRAINING_VALIDATION)
    status.phase("data_loaded", rows=len(shard))
    t_fit = time.time()  # from here: bins, rendezvous, Datasets, boosting (what a single process also does)

    p = params(job.params, threads=job.threads_per_worker)
    per_rank = max(1, BIN_SAMPLE_ROWS // rank.size)
    mine = shard if len(shard) <= per_rank else shard.sample(n=per_rank, random_state=p["seed"] + rank.rank)
    pooled = pd.concat(rank.allgather(mine[features + [label]]), ignore_index=True)
    ref = reference_dataset(pooled, features, categorical, p, label)
    status.phase("bins_agreed", sample_rows=len(pooled))

    me, port = rank.address()
    peers = rank.allgather(me)
    rank.shutdown()  # no more collectives: free the background thread for LightGBM
    status.phase("rendezvous_done", machines=peers)

    # construct both Datasets now, locally, from the shared reference: left to lgb.train they would be built
    # after the network is up, with LightGBM's distributed binning of each shard instead of the shared bins
    if rank.size > 1:
        p["pre_partition"] = True  # a Dataset parameter: it must be there before construction
    dtrain = dataset(shard, features, categorical, p, label, reference=ref).construct()
    dval = dataset(validation, features, categorical, p, label, reference=dtrain).construct()
    if rank.size > 1:
        p.update(
            {
                "tree_learner": "data",
                "num_machines": rank.size,
                "machines": ",".join(peers),
                "local_listen_port": port,
                "time_out": max(1, int(job.timeout_s // 60)),
            }
        )
    booster = lgb.train(p, dtrain, num_boost_round=job.num_boost_round, valid_sets=[dval], valid_names=["validation"])
    train_s = time.time() - t_fit
    status.phase("trained", train_s=train_s)
    result = {
        "rank": rank.rank,
        "rows": len(shard),
        "train_s": train_s,
        "total_s": time.time() - t0,
        "machines": peers,
    }
    if rank.rank != 0:
        return result, None
    return result | {"num_trees": booster.num_trees()}, without_addresses(booster.model_to_string()).encode()


def without_addresses(model_text: str) -> str:
    """The model text without the job's network addresses (its parameters section records each rank's port, new
    in every run): the same data and parameters give the same text, byte for byte, so that a rebuilt version can
    be compared with the registered one. LightGBM's defaults stand in for them; prediction never reads them."""
    import re

    text = re.sub(r"(?m)^\[machines: [^\]\n]*\]$", "[machines: ]", model_text)
    return re.sub(r"(?m)^\[local_listen_port: \d+\]$", "[local_listen_port: 12400]", text)


class SingleRow:
    """``LGBM_BoosterPredictForMatSingleRowFast``: one float32 row, probabilities as ``Booster.predict`` gives them
    (the same iterations: the best one when early stopping set it). Its buffers are shared: calls are serialised."""

    def __init__(self, booster: Any, n_features: int):
        import ctypes

        from lightgbm.basic import _LIB, _c_str, _safe_call

        if booster.num_feature() != n_features:
            raise ValueError("feature count differs")
        self._ct, self._lib, self._safe_call = ctypes, _LIB, _safe_call
        self._booster = booster  # keeps the handle alive
        self._lock = threading.Lock()
        self._config = ctypes.c_void_p()
        num_iteration = booster.best_iteration if booster.best_iteration > 0 else -1
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(0),  # C_API_DTYPE_FLOAT32
                ctypes.c_int32(n_features),
                _c_str("num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._out = np.empty(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._len = ctypes.c_int64(0)
        self._len_ref = ctypes.byref(self._len)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(X[0], dtype=np.float32)
        with self._lock:
            self._safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config, row.ctypes.data_as(self._ct.c_void_p), self._len_ref, self._out_ptr
                )
            )
            return self._out.copy()

    def __del__(self):
        try:
            self._lib.LGBM_FastConfigFree(self._config)
        except Exception:  # noqa: BLE001 - at interpreter exit
            pass
