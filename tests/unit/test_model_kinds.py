"""The model interface (``include/mlops/kinds``): every stage loads and scores a model through it; a registered
version stays a valid MLflow ``pyfunc`` model; a version recorded before kinds existed loads as LightGBM; LightGBM
(and its private API) stays behind its kind."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_models import TINY_CATEGORICAL, TINY_NUMERIC, tiny_version

from include.mlops import kinds
from include.mlops.core import registry

ROOT = Path(__file__).resolve().parents[2]
# LightGBM's kind, its training ranks included (the Horovod job that runs them, train/, knows no library)
LIGHTGBM_MODULES = {"include/mlops/kinds/lightgbm.py"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _sources():
    for folder in ("include", "plugins", "dags"):
        yield from (ROOT / folder).rglob("*.py")


def test_lightgbm_is_imported_only_by_its_kind():
    found = {
        str(p.relative_to(ROOT))
        for p in _sources()
        if any(m == "lightgbm" or m.startswith("lightgbm.") for m in _imports(p))
    }
    assert found <= LIGHTGBM_MODULES, sorted(found - LIGHTGBM_MODULES)


def test_lightgbm_private_api_is_used_only_by_its_kind():
    """``lightgbm.basic``'s ``_LIB`` (the single-row fast path) changes without notice between releases: one
    place uses it, pinned here, and a test of that path (``test_serving``'s single row against a batch) runs on
    every LightGBM the constraints allow."""
    users = {
        str(p.relative_to(ROOT)) for p in _sources() if "lightgbm.basic" in _imports(p) or "_LIB." in p.read_text()
    }
    assert users == {"include/mlops/kinds/lightgbm.py"}


def test_an_unknown_kind_names_the_module_it_looked_for():
    with pytest.raises(ValueError, match=r"no model kind 'xgboost': a kind is a module include/mlops/kinds/xgboost.py"):
        kinds.kind("xgboost")
    with pytest.raises(ValueError, match="not a module name"):
        kinds.kind("../core")


def test_a_version_recorded_without_a_kind_is_lightgbm():
    assert kinds.kind_of({"numeric": [], "categorical": []}) == "lightgbm"
    assert kinds.kind_of({"kind": "baseline"}) == "baseline"


@pytest.fixture
def version(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_MODEL_NAME", f"kinds_{uuid.uuid4().hex[:8]}")
    return tiny_version(tmp_path, reason="kinds test")


def _rows(n=50, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "distance": rng.uniform(100, 3000, n),
            "sched_dep_time": rng.integers(500, 2300, n),
            "carrier": rng.choice(["AA", "UA", "DL", "ZZ"], n),  # ZZ: a carrier the model never saw
        }
    )


def test_a_registered_version_scores_the_same_through_the_interface_and_mlflow_pyfunc(version):
    import mlflow

    model = kinds.load_version(version)
    assert (model.kind, model.version) == ("lightgbm", version)
    rows = _rows()
    ours = model.predict(rows)
    assert ours.shape == (len(rows),) and ((ours > 0) & (ours < 1)).all()
    # MLflow's own loader (what `mlflow models serve` uses) on the encoded frame gives the same scores
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.model_name()}/{version}")
    encoded = model.spec.encode(rows)[TINY_NUMERIC + TINY_CATEGORICAL]
    np.testing.assert_allclose(np.asarray(pyfunc.predict(encoded), dtype=float), ours, rtol=1e-12)
    # one row, through the kind's fast path, is the same number as in the batch
    one = model.predict_array(encoded.iloc[[3]].to_numpy(dtype=np.float32))
    np.testing.assert_allclose(one, ours[[3]], rtol=1e-12)
