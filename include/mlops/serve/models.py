"""Which model versions serve, and how a flight is routed between them.

``ModelStore`` holds an immutable ``Arms`` snapshot (champion, optional challenger, canary share). A refresh
builds a new snapshot off to the side and swaps the reference in one assignment, so a request in flight keeps
the snapshot it started with: alias changes never fail a request and need no restart.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..train.features import FeatureSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    version: str
    booster: Any
    spec: FeatureSpec

    def predict(self, raw: pd.DataFrame) -> np.ndarray:
        """Through pandas (``FeatureSpec.encode``): the reference the request path must equal."""
        return self.booster.predict(self.spec.encode(raw)[self.spec.columns])

    @cached_property
    def encoder(self):
        from .request import Encoder

        return Encoder(self.spec)

    def predict_array(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """The model's matrix (``encoder.encode``) scored with ``threads`` LightGBM threads; one row through
        LightGBM's single-row fast path (the same trees and numbers, without building a predictor per call)."""
        if len(X) == 1 and self.single_row is not None:
            return self.single_row(X)
        return self.booster.predict(X, num_threads=threads)

    @cached_property
    def single_row(self):
        try:
            return SingleRow(self.booster, len(self.spec.columns))
        except Exception:  # noqa: BLE001 - not a LightGBM booster, or a build without the fast path
            log.info("no single-row fast path for version %s; rows go through Booster.predict", self.version)
            return None


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


@dataclass(frozen=True)
class Arms:
    champion: ServedModel | None
    challenger: ServedModel | None
    canary_share: float

    def route(self, flight_keys: list[str]) -> list[str]:
        """'champion' or 'challenger' per flight, by a stable hash of its key (a flight always meets one arm)."""
        if self.challenger is None or self.canary_share <= 0:
            return ["champion"] * len(flight_keys)
        if self.champion is None:
            return ["challenger"] * len(flight_keys)
        return ["challenger" if bucket(k) < self.canary_share else "champion" for k in flight_keys]

    def describe(self) -> dict[str, Any]:
        return {
            "champion": self.champion.version if self.champion else None,
            "challenger": self.challenger.version if self.challenger else None,
            "canary_share": self.canary_share,
        }


def bucket(flight_key: str) -> float:
    """A stable number in [0, 1) for a flight key (the first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(flight_key.encode()).digest()[:8], "big") / 2**64


Loader = Callable[[], tuple[dict[str, str | None], float]]


class ModelStore:
    """Keeps ``arms`` in step with the registry aliases; loads each version once."""

    def __init__(self, resolve: Loader, load: Callable[[str], ServedModel]):
        self._resolve = resolve  # () -> ({"champion": v, "challenger": v}, canary share)
        self._load = load  # version -> ServedModel
        self._cache: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self.arms = Arms(None, None, 0.0)

    def refresh(self) -> bool:
        """Re-read the aliases; returns True when what is served changed."""
        with self._lock:
            aliases, share = self._resolve()
            models = {}
            for arm in ("champion", "challenger"):
                v = aliases.get(arm)
                if v and v not in self._cache:
                    self._cache[v] = self._load(v)
                models[arm] = self._cache.get(v) if v else None
            if (
                models["challenger"] is not None
                and models["champion"] is not None
                and models["challenger"].version == models["champion"].version
            ):
                models["challenger"] = None
            new = Arms(models["champion"], models["challenger"], share)
            changed = new.describe() != self.arms.describe()
            if changed:
                log.info("serving %s", new.describe())
            self.arms = new  # one reference swap: requests in flight keep their snapshot
            return changed
