"""make report's section on the deployment's latest tuning study, beside this branch's parameters
(``repro.report.latest_study`` / ``_study_lines``): none, one, one of another kind, a lake that does not answer."""

from __future__ import annotations

import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.repro import report
from include.mlops.train import params as params_file


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path.as_uri())


def _result(kind="lightgbm", beats=True):
    return {
        "study_id": "manual__2013-03-01T0000000000",
        "kind": kind,
        "finished_at": "2026-12-07T10:00:00.123456+00:00",
        "best": {"number": 4, "value": 0.4012, "params": {"num_leaves": 77, "learning_rate": 0.11}},
        "defaults": {"params": {"num_leaves": 31, "learning_rate": 0.05}, "value": 0.4100},
        "improvement": 0.0088,
        "margin": 0.002,
        "beats_defaults": beats,
    }


def _text(study):
    return "\n".join(report._study_lines(study))


def test_no_study_is_said_with_where_it_was_looked_for(lake):
    study = report.latest_study(lake)
    assert study["result"] is None and "error" not in study
    assert f"No tuning study has finished in `{lake.uri(*layout.tuning_latest())}`" in _text(study)


def test_the_study_beside_the_branchs_parameters(lake):
    lake.write_json(_result(), *layout.tuning_latest())
    study = report.latest_study(lake)
    branch = params_file.load()["lgbm"]
    text = _text(study)
    assert "Study `manual__2013-03-01T0000000000` (lightgbm, finished 2026-12-07 10:00 UTC)" in text
    assert "best validation log-loss 0.4012 (trial 4) against 0.4100" in text and "beats them by the margin" in text
    assert "| parameter | this branch | study's best | study's start |" in text
    assert f"| lgbm.num_leaves | {branch['num_leaves']} | 77 | 31 |" in text
    assert f"| lgbm.min_data_in_leaf | {branch['min_data_in_leaf']} | – | – |" in text  # not searched
    lake.write_json(_result(beats=False), *layout.tuning_latest())
    assert "not by the margin 0.002" in _text(report.latest_study(lake))


def test_a_study_of_another_kind_is_named_not_compared(lake):
    lake.write_json(_result(kind="baseline"), *layout.tuning_latest())
    text = _text(report.latest_study(lake))
    assert "It searched 'baseline'; this branch trains 'lightgbm'." in text and "| parameter |" not in text


def test_a_lake_that_does_not_answer_is_said_not_read_as_no_study(lake, monkeypatch):
    def refuse(*parts):
        raise PermissionError("access denied")

    monkeypatch.setattr(lake, "exists", refuse)
    study = report.latest_study(lake)
    text = _text(study)
    assert study["result"] is None and "PermissionError: access denied" in study["error"]
    assert "could not be read" in text and "No tuning study" not in text
