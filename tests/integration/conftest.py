import datetime as dt

import pytest
from curation import write_curated

from include.mlops.core.lake import Lake


@pytest.fixture(scope="session")
def curated_lake(tmp_path_factory):
    lake = Lake((tmp_path_factory.mktemp("train-lake") / "lake").as_uri())
    # curated straight from the simulator's tables (validation is not what these tests are about: every day of
    # 2013 passes the suites, tests/unit/test_validation.py); each pytest-xdist worker makes its own
    write_curated(lake, [(dt.date(2013, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(42)])
    return lake


@pytest.fixture(scope="session")
def models(curated_lake):
    """Two small LightGBM versions trained on three weeks of January 2013 ("1": 15 leaves, "2": 63)."""
    from include.mlops.core import frame
    from include.mlops.kinds import lightgbm
    from include.mlops.serve.models import ServedModel
    from include.mlops.train import features as F
    from include.mlops.train.params import load as load_params

    fl, we, _ = frame.load_window(curated_lake, "2013-01-21", 21)
    ts = F.build(fl, we)
    out = {}
    for version, leaves in (("1", 15), ("2", 63)):
        b = lightgbm.train_single(
            ts.part("train"),
            ts.part("validation"),
            ts.spec.columns,
            ts.spec.categorical,
            lightgbm.params(load_params()["lgbm"] | {"num_leaves": leaves}, threads=1),
            30,
        )
        out[version] = ServedModel(lightgbm.Model(b, ts.spec, version))
    return out
