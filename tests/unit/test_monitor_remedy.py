"""Monitoring's choice of remedy: retraining, or a tuning study when the retrainings of the last triggers each
failed the gate and the way back found nothing better (``monitor.remedy``, ``monitor.retraining_outcome``), read
from the files the gate and the way back write for the run id each trigger recorded."""

from __future__ import annotations

import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake, UnsafePath, run_key
from include.mlops.monitor import monitor
from include.mlops.monitor.config import MonitorConfig

CFG = MonitorConfig(tuning={"after_failed_retrains": 2})


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path.as_uri())


def _trigger(lake, date, outcome, signals=("decay",), remedy="retrain"):
    """A trigger on ``date`` and what its run left: ``passed`` / ``failed`` (the gate), ``nothing`` / ``chosen``
    (the way back after a failed gate), or None (the run has not reached its gate)."""
    run_id = f"monitoring__{date}__20261207T120000"
    t = {"date": date, "signals": list(signals), "reason": "r", "champion": "1", "report": "x"}
    t |= {"remedy": remedy, "run_id": run_id}
    key = run_key(run_id)
    if outcome is not None:
        lake.write_json({"passed": outcome == "passed", "version": "2"}, layout.gate(key), layout.GATE_DECISION)
    if outcome in ("nothing", "chosen"):
        lake.write_json({"chosen": "1" if outcome == "chosen" else None}, *layout.way_back(key))
    entries = monitor.triggers(lake) + [t]
    lake.write_json(sorted(entries, key=lambda e: e["date"]), *layout.triggers())
    return t


def test_each_outcome_is_read_from_the_gate_and_the_way_back(lake):
    cases = {
        "2013-03-01": ("passed", ("decay",), "passed"),
        "2013-03-02": ("failed", ("decay",), None),  # gate failed, the way back has not answered
        "2013-03-03": ("nothing", ("decay",), "failed"),
        "2013-03-04": ("chosen", ("decay",), "way back"),
        "2013-03-05": ("failed", ("data_drift",), "failed"),  # no way back for drift alone
        "2013-03-06": (None, ("decay",), None),  # the run has not reached its gate
    }
    for date, (planted, signals, expected) in cases.items():
        t = _trigger(lake, date, planted, signals)
        assert monitor.retraining_outcome(lake, t) == expected, date
    assert monitor.retraining_outcome(lake, {"date": "2013-03-07", "signals": ["decay"]}) is None  # no run id
    tune = _trigger(lake, "2013-03-08", "nothing", remedy="tune")
    assert monitor.retraining_outcome(lake, tune) is None


def test_two_failed_retrainings_in_a_row_start_a_study(lake):
    _trigger(lake, "2013-03-01", "nothing")
    assert monitor.remedy(lake, "2013-03-20", CFG)[0] == "retrain"  # one failure
    _trigger(lake, "2013-03-15", "failed", signals=("data_drift",))
    what, why = monitor.remedy(lake, "2013-03-30", CFG)
    assert what == "tune" and "2013-03-01, 2013-03-15" in why, why
    # a trigger's own date and later ones do not count (a rerun of a day replaces its own entry)
    assert monitor.remedy(lake, "2013-03-15", CFG)[0] == "retrain"
    # no tune: section in params.yaml, or off
    what, why = monitor.remedy(lake, "2013-03-30", CFG, tunable=False)
    assert what == "retrain" and "no tune: section" in why
    assert monitor.remedy(lake, "2013-03-30", MonitorConfig(tuning={"after_failed_retrains": None}))[0] == "retrain"
    assert monitor.remedy(lake, "2013-03-30", MonitorConfig(tuning={"after_failed_retrains": 3}))[0] == "retrain"


@pytest.mark.parametrize("between", ["passed", "chosen", None, "tune"])
def test_a_pass_a_way_back_an_unknown_outcome_or_a_study_ends_the_count(lake, between):
    _trigger(lake, "2013-03-01", "nothing")
    if between == "tune":
        _trigger(lake, "2013-03-15", "nothing", remedy="tune")
    else:
        _trigger(lake, "2013-03-15", between)
    _trigger(lake, "2013-03-29", "nothing")
    assert monitor.remedy(lake, "2013-04-15", CFG)[0] == "retrain"
    _trigger(lake, "2013-04-12", "nothing")  # two in a row after it
    assert monitor.remedy(lake, "2013-04-30", CFG)[0] == "tune"


def test_an_unreadable_outcome_is_an_error_not_a_retraining(lake):
    t = _trigger(lake, "2013-03-01", "nothing")
    lake.write_bytes(b"{", *layout.way_back(run_key(t["run_id"])))  # a torn or edited file
    _trigger(lake, "2013-03-15", "nothing")
    with pytest.raises(ValueError):
        monitor.remedy(lake, "2013-03-30", CFG)
    bad = {"date": "2013-03-02", "signals": ["decay"], "run_id": "../x", "remedy": "retrain"}
    with pytest.raises(UnsafePath):
        monitor.retraining_outcome(lake, bad)


def test_the_trigger_record_keeps_the_remedy_and_the_run_id(lake):
    d = {"date": "2013-03-03", "signals": ["decay"], "reason": "r", "champion": "1", "report": "x"}
    monitor.record_trigger(lake, d | {"remedy": "tune", "run_id": "monitoring__2013-03-03__1"})
    (t,) = monitor.triggers(lake)
    assert t["remedy"] == "tune" and t["run_id"] == "monitoring__2013-03-03__1"
    monitor.record_trigger(lake, d)  # a record of before: no remedy, no run id (read as a retraining, unknown)
    (t,) = monitor.triggers(lake)
    assert "run_id" not in t and monitor.retraining_outcome(lake, t) is None
