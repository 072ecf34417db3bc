"""The baseline kind: a logistic regression in NumPy, trained in one process. What a model must beat to be worth
its trees, and the proof that the model interface holds a second kind through the whole lifecycle.

The encoded matrix (``FeatureSpec``: numeric columns, categories as codes, -1 unseen) becomes its design matrix:
numeric columns standardised with the training split's means and deviations (a missing value is the mean: 0),
each category one-hot (an unseen or missing one: all zeros). Fitted by Newton's method with an L2 penalty
(``params.yaml``'s ``baseline:`` section), deterministic. Staged as JSON; registered as an ``mlflow.pyfunc``
``PythonModel`` whose artifact is that JSON (``mlflow models serve`` and MLflow's tools load it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import Model as _Model

if TYPE_CHECKING:
    import pandas as pd

    from ..core.frame import FeatureSpec

KIND = "baseline"
PARAMS = "baseline"  # its section of params.yaml
SETTINGS: dict[str, dict[str, Any]] = {
    "l2": {"type": "number", "minimum": 0, "maximum": 1e6},  # the penalty on the weights (not the intercept)
    "max_iter": {"type": "integer", "minimum": 1, "maximum": 200},  # Newton steps at most
}


class Model(_Model):
    kind = KIND

    def __init__(self, state: dict[str, Any], spec: FeatureSpec, version: str | None = None):
        super().__init__(spec, version)
        self.state = state
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.scale = np.asarray(state["scale"], dtype=np.float64)
        self.levels = [int(n) for n in state["levels"]]
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.intercept = float(state["intercept"])

    def design(self, X: np.ndarray) -> np.ndarray:
        return design(X, self.mean, self.scale, self.levels)

    def predict_array(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        return _sigmoid(self.design(np.asarray(X, dtype=np.float64)) @ self.weights + self.intercept)

    def feature_importance(self) -> dict[str, float]:
        """Each feature's largest absolute weight (numeric: per standard deviation; categorical: of a level)."""
        n = len(self.mean)
        out = {c: round(abs(float(w)), 4) for c, w in zip(self.spec.numeric, self.weights[:n])}
        start = n
        for c, k in zip(self.spec.categorical, self.levels):
            out[c] = round(float(np.abs(self.weights[start : start + k]).max(initial=0.0)), 4)
            start += k
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.state).encode()


def design(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, levels: list[int]) -> np.ndarray:
    """The encoded matrix as the regression sees it: standardised numbers (missing: 0), one-hot categories."""
    n = len(mean)
    num = (X[:, :n] - mean) / scale
    num = np.where(np.isfinite(num), num, 0.0)
    parts = [num]
    for j, k in enumerate(levels):
        codes = X[:, n + j]
        onehot = np.zeros((len(X), k))
        ok = (codes >= 0) & (codes < k)
        onehot[np.nonzero(ok)[0], codes[ok].astype(int)] = 1.0
        parts.append(onehot)
    return np.hstack(parts) if parts else np.zeros((len(X), 0))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def fit(train: pd.DataFrame, validation: pd.DataFrame, spec: FeatureSpec, params: dict[str, Any]) -> Model:
    """Fit on the training split's encoded rows (its label column ``spec.label``); ``validation`` is not used
    for fitting (the gate and the tracked metrics score it)."""
    X = train[spec.columns].to_numpy(dtype=np.float64)
    y = train[spec.label].to_numpy(dtype=np.float64)
    n = len(spec.numeric)
    mean = np.nanmean(X[:, :n], axis=0) if len(X) else np.zeros(n)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.nanstd(X[:, :n], axis=0) if len(X) else np.ones(n)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    levels = [len(spec.categories.get(c, [])) for c in spec.categorical]
    D = np.hstack([design(X, mean, scale, levels), np.ones((len(X), 1))])  # the intercept last
    l2 = float(params.get("l2", 1.0))
    penalty = np.full(D.shape[1], l2)
    penalty[-1] = 0.0
    w = np.zeros(D.shape[1])
    for _ in range(int(params.get("max_iter", 50))):
        p = _sigmoid(D @ w)
        grad = D.T @ (p - y) + penalty * w
        hess = (D * (p * (1 - p))[:, None]).T @ D + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    state = {
        "kind": KIND,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "levels": levels,
        "weights": w[:-1].tolist(),
        "intercept": float(w[-1]),
        "params": {"l2": l2, "max_iter": int(params.get("max_iter", 50))},
    }
    return Model(state, spec)


def tracked_params(params: dict[str, Any], threads: int = 1) -> dict[str, Any]:
    """The parameters a run records."""
    return {"kind": KIND, **params}


def from_staged(data: bytes, spec: FeatureSpec) -> Model:
    return Model(json.loads(data), spec)


def load(uri: str, spec: FeatureSpec, version: str | None = None) -> Model:
    """A registered version: its pyfunc model's own state."""
    import mlflow

    return Model(mlflow.pyfunc.load_model(uri).unwrap_python_model().state, spec, version)


def _python_model():
    import mlflow

    class Baseline(mlflow.pyfunc.PythonModel):
        """The registered form: the encoded columns in, the positive outcome's probability out."""

        def load_context(self, context):
            self.state = json.loads(Path(context.artifacts["model"]).read_text())

        def predict(self, context, model_input, params=None):
            s = self.state
            X = np.asarray(model_input, dtype=np.float64)
            z = design(X, np.asarray(s["mean"]), np.asarray(s["scale"]), s["levels"]) @ np.asarray(s["weights"])
            return _sigmoid(z + s["intercept"])

    return Baseline()


def register(path: Path, registered_name: str):
    """Track the staged JSON in the active MLflow run as a pyfunc model and register it as a new version."""
    import mlflow

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=_python_model(),
        artifacts={"model": str(path)},
        registered_model_name=registered_name,
        await_registration_for=60,
        pip_requirements=[f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"],
    )
