"""Model kinds: the one interface through which every stage loads and scores a model.

A kind is one module in this package, named by the ``kind`` its versions record in their ``feature_spec.json``
(a version registered before kinds existed is ``lightgbm``). It provides:

``KIND``, ``PARAMS``, ``SETTINGS``  its name, its section of ``params.yaml``, its parameters' types and ranges
``fit(train, validation, spec, params)``  trains in one process on a staged training set's encoded splits, or
``train_rank(job, rank, status)``  one rank of the data-parallel Horovod job the training stage launches
``tracked_params(params, threads)``  what a run records of its parameters
``load(uri, spec, version)``      a registered version (an MLflow model URI) as a ``Model``
``from_staged(data, spec)``       a model a training run staged in the lake (its ``layout.TRAINING_MODEL`` bytes;
                                  the training set's ``spec.json`` names the kind)
``register(path, name)``         track a staged model file with MLflow and register it as a new version; every
                                  registered version is a valid ``mlflow.pyfunc`` model (MLflow's own tools load it)

and its ``Model`` (``to_bytes``: what a one-process kind stages) scores a frame of raw rows (``predict``: encoded with the version's ``FeatureSpec``) or the
encoded float32 matrix (``predict_array``): the probability of the positive outcome. The gate, the canary,
training's evaluation and the prediction service score through it; the format is MLflow's, the interface the
project's. Anything specific to one library (LightGBM's single-row fast path, its private C API) stays in its
kind's module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # light to import: params.yaml's schema reads the kinds' parameters when a DAG file is parsed
    import numpy as np
    import pandas as pd

    from ..core.frame import FeatureSpec

DEFAULT_KIND = "lightgbm"  # the kind of a version whose feature spec names none (registered before kinds)


class Model:
    """A loaded model of some kind: its version (None: staged, not registered), its feature spec, and how it
    scores an encoded matrix (``predict_array``, the kind's own)."""

    kind: str = ""

    def __init__(self, spec: FeatureSpec, version: str | None = None):
        self.spec = spec
        self.version = version

    def predict(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw rows (curated or as a request sends them) encoded with this version's spec, then scored."""
        return self.predict_encoded(self.spec.encode(raw)[self.spec.columns])

    def predict_encoded(self, encoded: pd.DataFrame) -> np.ndarray:
        """Rows already encoded with this version's spec (a training set's), in its column order."""
        import numpy as np

        return self.predict_array(encoded.to_numpy(dtype=np.float32))

    def predict_array(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """The encoded float32 matrix scored with at most ``threads`` threads."""
        raise NotImplementedError

    def feature_importance(self) -> dict[str, float]:
        """Each feature's importance as the kind measures it (empty where it has none)."""
        return {}


def kind(name: str) -> ModuleType:
    """The module of a kind, by name: ``include/mlops/kinds/<name>.py``."""
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"model kind {name!r} is not a module name")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise ValueError(f"no model kind {name!r}: a kind is a module include/mlops/kinds/{name}.py") from None


def available() -> dict[str, ModuleType]:
    """Every kind of this package (its modules but the private ones), by name: a new kind is a new module with
    ``KIND``, ``PARAMS`` (its section of params.yaml) and ``SETTINGS`` (its parameters' types and ranges)."""
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {n: kind(n) for n in names}


def kind_of(spec: dict[str, Any]) -> str:
    return str(spec.get("kind") or DEFAULT_KIND)


def spec_of(feature_spec: dict[str, Any]) -> FeatureSpec:
    """The FeatureSpec of a recorded feature spec (``feature_spec.json``: the spec and its kind)."""
    from ..core.frame import FeatureSpec

    return FeatureSpec.from_dict({k: feature_spec[k] for k in ("numeric", "categorical", "categories", "label")})


def load_version(version: str, settings=None) -> Model:
    """A registered version, loaded by its kind."""
    from ..core import registry

    uri, recorded = registry.version_model(version, settings)
    return kind(kind_of(recorded)).load(uri, spec_of(recorded), str(version))


def staged(lake, run_key: str) -> Model:
    """The model a training run staged in the lake (``training/<run_key>/``), loaded by the kind its training set
    names."""
    from ..core import layout

    folder = layout.training(run_key)
    meta = lake.read_json(folder, layout.TRAINING_SPEC)
    return kind(kind_of(meta)).from_staged(lake.read_bytes(folder, layout.TRAINING_MODEL), spec_of(meta["spec"]))
