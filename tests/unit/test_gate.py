import numpy as np
import pandas as pd
import pytest

from include.mlops.evaluate.config import GateConfig
from include.mlops.evaluate.gate import decide

RNG = np.random.default_rng(0)
N = 4000


@pytest.fixture(scope="module")
def data():
    frame = pd.DataFrame({"origin": RNG.choice(["EWR", "JFK", "LGA"], N), "carrier": RNG.choice(["AA", "UA"], N)})
    signal = RNG.standard_normal(N)
    y = (signal + RNG.standard_normal(N) > 0.7).astype(int)
    return frame, y, signal


def scores(signal, noise):
    """Calibrated-ish probabilities whose quality falls as noise rises."""
    z = signal + noise * RNG.standard_normal(len(signal))
    return 1 / (1 + np.exp(-(1.6 * z - 1.2)))


CFG = GateConfig(min_auc=0.6, max_auc_drop=0.01, max_ece=0.2, min_slice_rows=200, max_slice_auc_drop=0.05)


def test_first_model_passes_on_the_floor_alone(data):
    frame, y, s = data
    d = decide(frame, y, scores(s, 0.3), None, CFG)
    assert d.passed and [c.name for c in d.checks] == ["auc_floor", "calibration"]


def test_a_better_model_passes(data):
    frame, y, s = data
    d = decide(frame, y, scores(s, 0.2), scores(s, 0.8), CFG)
    assert d.passed, d.summary()
    assert {c.name for c in d.checks} == {"auc_floor", "calibration", "auc_vs_champion", "slices"}


def test_a_worse_model_fails_against_the_champion(data):
    frame, y, s = data
    d = decide(frame, y, scores(s, 1.0), scores(s, 0.2), CFG)
    assert not d.passed and "auc_vs_champion" in [c.name for c in d.failed]
    assert "vs champion" in d.summary()


def test_a_model_below_the_floor_fails(data):
    frame, y, _ = data
    d = decide(frame, y, RNG.random(N), None, CFG)
    assert not d.passed and "auc_floor" in [c.name for c in d.failed]


def test_a_slice_regression_fails_even_when_overall_auc_holds(data):
    frame, y, s = data
    champ = scores(s, 0.3)
    cand = champ.copy()
    jfk = (frame["origin"] == "JFK").to_numpy()
    cand[jfk] = RNG.random(jfk.sum())  # useless on JFK only
    better_elsewhere = scores(s, 0.05)
    cand[~jfk] = better_elsewhere[~jfk]
    d = decide(frame, y, cand, champ, CFG.replace(max_auc_drop=0.2))
    assert "slices" in [c.name for c in d.failed]
    assert "origin=JFK" in next(c.detail for c in d.checks if c.name == "slices")
    regressed = {(s["column"], s["value"]) for s in d.slices if s["regression"]}
    assert ("origin", "JFK") in regressed and not regressed & {("origin", "EWR"), ("origin", "LGA")}


def test_thresholds_come_from_config_and_overrides(tmp_path):
    """The YAML file holds every value (the code none); an override changes a known key, None keeps the file's."""
    f = tmp_path / "gate.yaml"
    f.write_text(GateConfig.FILE.read_text().replace("min_auc: 0.60", "min_auc: 0.7"))
    cfg = GateConfig.load(f, {"max_ece": 0.1, "min_auc": None})
    assert cfg.min_auc == 0.7 and cfg.max_ece == 0.1 and cfg.slice_columns == ["origin", "carrier"]
    with pytest.raises(ValueError, match="unknown settings"):
        GateConfig.load(f, {"min_acu": 0.5})
    shipped = GateConfig()
    assert shipped.min_auc == 0.60 and shipped.max_ece == 0.15  # include/config/gate.yaml, the one home


def test_a_challenger_gets_traffic_only_while_its_own_canary_runs():
    from include.mlops.core.rollouts import canary_share

    canary = {"version": "4", "status": "canary", "canary_share": 0.2}
    assert canary_share(canary, "4") == 0.2
    assert canary_share(None, "4") == 0.0  # alias set, rollout not started
    assert canary_share(canary | {"version": "3"}, "4") == 0.0  # an older rollout's file
    assert canary_share(canary | {"status": "rolled_back"}, "4") == 0.0
    assert canary_share(canary, None) == 0.0
