"""LightGBM's kind: a gradient-boosted tree ensemble (``lightgbm.Booster``), registered with MLflow's ``lightgbm``
flavour (which is also a ``python_function`` model), trained data-parallel by the Horovod job (``train.launch``).

One row is scored through LightGBM's single-row fast path (``SingleRow``: the same trees and numbers without
building a predictor per call). It uses LightGBM's C API through ``lightgbm.basic``'s private ``_LIB``: the one
place in the project that touches a private LightGBM API (``tests/unit/test_model_kinds.py`` pins that).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.frame import FeatureSpec
from . import Model as _Model

log = logging.getLogger(__name__)
KIND = "lightgbm"


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
