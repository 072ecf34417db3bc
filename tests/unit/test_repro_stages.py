"""The DVC stages' guards (include/mlops/repro/stages.py): what they refuse before reading or writing anything."""

from __future__ import annotations

import datetime as dt

import pytest

from include.mlops.kinds.lightgbm import without_addresses
from include.mlops.repro import stages
from include.mlops.train import params as params_file


def test_a_variable_that_would_change_a_stage_behind_dvcs_back_is_refused_by_name():
    stages.check_environment({"MLOPS_HOME": "/x", "PATH": "/bin"})  # where, not what: allowed
    with pytest.raises(stages.StageError, match=r"MLOPS_PARAMS='/tmp/p.yaml' \(another params.yaml") as exc:
        stages.check_environment({"MLOPS_PARAMS": "/tmp/p.yaml", "MLOPS_CONFIG_DIR": "examples/pizza"})
    assert "MLOPS_CONFIG_DIR='examples/pizza'" in str(exc.value)
    stages.check_environment({"MLOPS_PARAMS": ""})  # empty is unset


def test_the_snapshots_days_come_from_params_yaml():
    days = stages.snapshot_days({"snapshot": {"first": "2013-01-30", "last": "2013-02-02"}})
    assert days == [dt.date(2013, 1, 30), dt.date(2013, 1, 31), dt.date(2013, 2, 1), dt.date(2013, 2, 2)]
    with pytest.raises(stages.StageError, match="no snapshot: section"):
        stages.snapshot_days({"train": {}})
    with pytest.raises(stages.StageError, match="first 2013-02-02 to last 2013-01-30"):
        stages.snapshot_days({"snapshot": {"first": "2013-02-02", "last": "2013-01-30"}})
    with pytest.raises(stages.StageError, match="1 to 366 days"):
        stages.snapshot_days({"snapshot": {"first": "2013-01-01", "last": "2015-01-01"}})


def test_params_yaml_holds_the_snapshot_and_checks_it(tmp_path):
    p = params_file.load()
    assert set(p["snapshot"]) == {"first", "last"}
    assert "snapshot" not in params_file.resolve({})  # a training run's parameters: not the snapshot's
    bad = tmp_path / "params.yaml"
    text = (params_file.PROJECT_ROOT / "params.yaml").read_text()
    bad.write_text(text.replace('last: "2013-01-28"', 'last: "January"'))
    with pytest.raises(ValueError, match=r"snapshot:.*last"):
        params_file.load(bad)


def test_a_model_text_holds_no_network_address():
    text = "tree\n[machines: 127.0.0.1:40001,127.0.0.1:40002]\n[local_listen_port: 40001]\n[num_machines: 2]\n"
    assert without_addresses(text) == "tree\n[machines: ]\n[local_listen_port: 12400]\n[num_machines: 2]\n"
    assert without_addresses("no parameters\n") == "no parameters\n"


def test_the_calibration_curve_bins_as_the_calibration_error_does():
    import numpy as np

    from include.mlops.core.metrics import calibration_curve, metrics

    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0, 0.55])
    curve = calibration_curve(y, p)
    assert curve == [(0.05, 0.0), (0.135, 0.5), (0.55, 0.0), (0.975, 1.0)]  # 1.0 falls in the last bin; empty bins out
    ece = sum(abs(o - x) * n for (x, o), n in zip(curve, (1, 2, 1, 2), strict=True)) / len(y)
    assert abs(ece - metrics(y, p)["ece"]) < 1e-6
