"""Training through the model interface: the kind a run trains comes from params.yaml (or the run); the baseline
kind (a NumPy logistic regression) trains in one process on the same staged training set as LightGBM's Horovod
ranks, is evaluated and registered as an MLflow pyfunc model; a kind added as one module plus its params.yaml key
trains, with nothing else changed."""

from __future__ import annotations

import importlib
import textwrap
import uuid

import numpy as np
import pytest

from include.mlops import kinds
from include.mlops.core import layout
from include.mlops.core.metrics import metrics
from include.mlops.train import params, pipeline

END = "2013-01-28"


def test_the_baseline_trains_in_one_process_and_registers_as_pyfunc(curated_lake, monkeypatch):
    monkeypatch.setenv("MLOPS_MODEL_NAME", f"baseline_{uuid.uuid4().hex[:6]}")
    key = f"baseline-{uuid.uuid4().hex[:6]}"
    meta = pipeline.build_training_set(curated_lake, key, 21, 2, end=END, kind="baseline")
    assert meta["kind"] == "baseline"
    job = pipeline.train(curated_lake, key, 2)
    assert job["workers"] == 1 and job["num_trees"] is None  # no Horovod job: one process
    model = kinds.staged(curated_lake, key)
    assert model.kind == "baseline"
    test = curated_lake.read_parquet(layout.training(key), layout.TRAINING_TEST)
    p = model.predict_encoded(test[model.spec.columns])
    assert 0.6 < metrics(test[model.spec.label].to_numpy(), p)["auc"] < 0.9
    reg = pipeline.register(curated_lake, key, params={}, reason="baseline test")
    import mlflow

    assert mlflow.get_run(reg["run_id"]).data.params["kind"] == "baseline"
    loaded = kinds.load_version(reg["version"])
    assert loaded.kind == "baseline"
    pyfunc = mlflow.pyfunc.load_model(reg["model_uri"])
    X = test[model.spec.columns].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(pyfunc.predict(X), loaded.predict_array(X), rtol=1e-12)
    np.testing.assert_allclose(loaded.predict_array(X), p, rtol=1e-9)


@pytest.fixture
def constant_kind(tmp_path, monkeypatch):
    """A kind of its own in one module (``constant.py``: every row gets the training split's positive rate,
    shrunk by its one parameter), and its key in a copy of params.yaml."""
    folder = tmp_path / "kinds"
    folder.mkdir()
    (folder / "constant.py").write_text(
        textwrap.dedent(
            """
            import json

            import numpy as np

            from include.mlops.kinds import Model as _Model

            KIND = "constant"
            PARAMS = "constant"
            SETTINGS = {"shrink": {"type": "number", "minimum": 0, "maximum": 1}}


            class Model(_Model):
                kind = KIND

                def __init__(self, rate, spec, version=None):
                    super().__init__(spec, version)
                    self.rate = rate

                def predict_array(self, X, threads=1):
                    return np.full(len(X), self.rate)

                def to_bytes(self):
                    return json.dumps({"rate": self.rate}).encode()


            def fit(train, validation, spec, params):
                return Model(float(train[spec.label].mean()) * (1 - params["shrink"]), spec)


            def from_staged(data, spec):
                return Model(json.loads(data)["rate"], spec)


            def tracked_params(values, threads=1):
                return dict(values)
            """
        )
    )
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(folder)])
    yaml_file = tmp_path / "params.yaml"
    text = params.path().read_text().replace("  kind: lightgbm", "  kind: constant")
    yaml_file.write_text(text + "constant:\n  shrink: 0.5\n")
    monkeypatch.setenv("MLOPS_PARAMS", str(yaml_file))
    importlib.reload(params)
    yield
    monkeypatch.undo()
    importlib.reload(params)


def test_a_kind_added_in_one_module_and_its_params_key_trains(curated_lake, constant_kind):
    assert params.KINDS["constant"] == "constant" and params.load()["train"]["kind"] == "constant"
    key = f"constant-{uuid.uuid4().hex[:6]}"
    meta = pipeline.build_training_set(curated_lake, key, 14, 1, end=END)  # the kind from params.yaml
    assert meta["kind"] == "constant"
    pipeline.train(curated_lake, key, 1)
    model = kinds.staged(curated_lake, key)
    train = curated_lake.read_parquet(layout.training(key), *layout.training_shard(0))
    assert model.rate == pytest.approx(train[model.spec.label].mean() * 0.5)
    assert pipeline.evaluate(curated_lake, key)["metrics"]["test_auc"] == pytest.approx(0.5)
    without = params.path().with_name("without.yaml")
    without.write_text(params.path().read_text().replace("constant:\n  shrink: 0.5\n", ""))
    with pytest.raises(ValueError, match=r"missing \['constant'\]"):
        params.load(without)


def test_the_splits_shares_are_parameters_recorded_with_the_set(curated_lake):
    """The validation and test shares of the window's days come from params.yaml (or the run) and stay with the
    training set, so that a rebuild splits the same days."""
    key = f"shares-{uuid.uuid4().hex[:6]}"
    meta = pipeline.build_training_set(curated_lake, key, 20, 1, end=END, kind="baseline", shares=(0.1, 0.3))
    assert (len(meta["split"]["validation"]), len(meta["split"]["test"])) == (2, 6)
    staged = curated_lake.read_json(layout.training(key), layout.TRAINING_SPEC)
    assert (staged["validation_share"], staged["test_share"]) == (0.1, 0.3)
    default = pipeline.build_training_set(curated_lake, key + "-d", 20, 1, end=END, kind="baseline")
    train = params.load()["train"]
    assert (default["validation_share"], default["test_share"]) == (train["validation_share"], train["test_share"])
    assert len(default["split"]["test"]) == round(20 * train["test_share"])


def test_an_unknown_kind_is_refused_by_name(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(params.path().read_text().replace("  kind: lightgbm", "  kind: xgboost"))
    with pytest.raises(ValueError, match="kind"):
        params.load(f)
