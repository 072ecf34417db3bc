"""Training/serving skew (``monitor.skew``): the request fields the prediction log kept against the curated values of
the same rows, per feature; its settings (``skew:`` of monitoring.yaml); the daily report's section, HTML table and
``serving_skew`` signal; and that the signal alerts (Slack, from the report task) and never retrains."""

from __future__ import annotations

import datetime as dt
import importlib

import numpy as np
import pandas as pd
import pytest
from curation import write_curated

from include.mlops.core import frame, layout, rollouts, schema
from include.mlops.core import profile as P
from include.mlops.core.lake import Lake
from include.mlops.monitor import monitor, skew
from include.mlops.monitor.config import MonitorConfig

KEY = "flight_key"
NUMERIC = ["distance", "temp"]
CATEGORICAL = ["carrier"]


def curated(n: int = 1000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            KEY: [f"2013-01-02/UA/{i}/EWR" for i in range(n)],
            "distance": rng.integers(100, 3000, n).astype("float64"),
            "temp": np.round(rng.normal(40, 10, n), 2),
            "carrier": rng.choice(["UA", "AA", "B6"], n),
            "is_labelled": True,
        }
    )


def served_from(cur: pd.DataFrame) -> pd.DataFrame:
    """What the prediction log holds of these rows: the key, the answer's columns, the request fields."""
    return cur[[KEY, *NUMERIC, *CATEGORICAL]].assign(
        arm="champion", version="1", score=0.2, predicted_at="2013-01-02T06:00:00+00:00"
    )


def compare(served, cur, max_mismatch=0.05, min_rows=200):
    return skew.compare(
        served, cur, key=KEY, numeric=NUMERIC, categorical=CATEGORICAL, max_mismatch=max_mismatch, min_rows=min_rows
    )


def by_feature(result) -> dict:
    return {f["feature"]: f for f in result["features"]}


# ------------------------------------------------------------------------------------------- the comparison
def test_identical_features_have_no_mismatch():
    cur = curated()
    got = compare(served_from(cur), cur)
    assert got["rows"] == 1000 and got["judged"] and got["skewed"] == [] and not skew.is_up(got)
    assert [f["feature"] for f in got["features"]] == ["distance", "temp", "carrier"]  # numeric first
    for f in got["features"]:
        assert f["compared"] == 1000 and f["mismatch"] == 0.0 and f["differ"] == 0, f
    assert by_feature(got)["temp"]["mean_abs_diff"] == 0.0 and by_feature(got)["carrier"]["mean_abs_diff"] is None
    assert (got["unmatched"], got["unlogged"], got["served"]) == (0, 0, 1000)


def test_a_feature_perturbed_on_a_tenth_of_the_rows_is_skewed_and_the_others_are_not():
    cur = curated()
    served = served_from(cur)
    served.loc[served.index[::10], "temp"] += 3.0  # a forecast, three degrees off, for every tenth flight
    got = compare(served, cur)
    f = by_feature(got)
    assert f["temp"]["mismatch"] == pytest.approx(0.1) and f["temp"]["differ"] == 100
    assert f["temp"]["mean_abs_diff"] == pytest.approx(0.3)  # 3 degrees on a tenth of the rows
    assert f["distance"]["mismatch"] == 0.0 and f["carrier"]["mismatch"] == 0.0
    assert got["skewed"] == ["temp"] and got["judged"] and skew.is_up(got)
    # a category sent otherwise counts the same way
    served.loc[served.index[:60], "carrier"] = "XX"
    assert compare(served, cur)["skewed"] == ["temp", "carrier"]
    # reaching the threshold is enough; just under it is not
    assert compare(served, cur, max_mismatch=0.1)["skewed"] == ["temp"]
    assert compare(served, cur, max_mismatch=0.1001)["skewed"] == []
    # null: reported, never judged
    off = compare(served, cur, max_mismatch=None)
    assert off["skewed"] == [] and by_feature(off)["temp"]["mismatch"] == pytest.approx(0.1) and not skew.is_up(off)


def test_missing_on_one_side_differs_and_on_both_sides_does_not():
    cur = curated(100)
    served = served_from(cur)
    served.loc[served.index[:10], "temp"] = np.nan  # the client sent no weather
    cur.loc[cur.index[90:], "temp"] = np.nan  # curation has none, the client sent some
    served.loc[served.index[:5], "carrier"] = None
    both = cur.copy()
    both.loc[both.index[:5], "carrier"] = None  # missing on both sides: the same
    got = by_feature(compare(served, cur, min_rows=1))
    assert got["temp"]["differ"] == 20 and got["temp"]["mismatch"] == pytest.approx(0.2)
    assert got["temp"]["mean_abs_diff"] == 0.0  # over the rows where both have a value
    assert got["carrier"]["differ"] == 5
    assert by_feature(compare(served, both, min_rows=1))["carrier"]["differ"] == 0
    holes = cur.copy()
    holes.loc[holes.index[:10], "temp"] = np.nan
    assert by_feature(compare(served, holes, min_rows=1))["temp"]["differ"] == 10  # rows 90..99 only


def test_numbers_within_the_tolerance_and_types_that_differ_are_the_same():
    cur = curated(200)
    served = served_from(cur)
    served["temp"] = served["temp"] * (1 + 1e-7)  # float32 round trips and the like
    served["distance"] = served["distance"].astype("int64").astype("object")  # an integer the client sent
    cur["carrier"] = cur["carrier"].astype("category")
    cur["temp"] = cur["temp"].astype("float32")
    got = compare(served, cur)
    assert all(f["mismatch"] == 0.0 for f in got["features"]), got["features"]
    served.loc[served.index[:20], "distance"] += 1  # a stale distance, one mile off
    assert by_feature(compare(served, cur))["distance"]["differ"] == 20
    codes = pd.DataFrame({KEY: ["a", "b", "c"], "code": [1.0, 2.0, np.nan]})
    sent = pd.DataFrame({KEY: ["a", "b", "c"], "code": ["1", "3", None]})
    [f] = skew.compare(sent, codes, key=KEY, numeric=[], categorical=["code"], max_mismatch=0.5, min_rows=1)["features"]
    assert f["differ"] == 1  # 1.0 is the category "1"; "3" is not 2


def test_too_few_rows_are_reported_and_not_judged():
    cur = curated(1000)
    served = served_from(cur).iloc[:199].copy()
    served["temp"] += 5.0  # every row differs
    got = compare(served, cur)
    assert got["rows"] == 199 and not got["judged"] and got["skewed"] == ["temp"] and not skew.is_up(got)
    assert skew.is_up(compare(served_from(cur).assign(temp=lambda d: d["temp"] + 5.0), cur))


def test_only_rows_curation_knows_with_logged_fields_are_compared_each_once():
    cur = curated(300)
    served = served_from(cur)
    unknown = served.iloc[:7].assign(**{KEY: lambda d: d[KEY] + "-unknown"})
    unlogged = served.iloc[7:10].assign(distance=np.nan, temp=np.nan, carrier=None)  # an older log's records
    repost = served.iloc[10:12].assign(temp=99.0)  # a later request for a flight already answered: not its first
    log = pd.concat([served.iloc[10:], unknown, unlogged, repost], ignore_index=True)
    got = compare(log, cur)
    assert (got["served"], got["unmatched"], got["unlogged"], got["rows"]) == (302, 7, 3, 290)
    assert all(f["mismatch"] == 0.0 for f in got["features"])
    # a log without any request field (before the service kept them), or an empty one: nothing to compare
    bare = served[[KEY, "arm", "version", "score", "predicted_at"]]
    none = compare(bare, cur)
    assert none["features"] == [] and none["rows"] == 0 and none["unlogged"] == 300 and not none["judged"]
    empty = compare(bare.iloc[0:0], cur)
    assert empty["rows"] == 0 and empty["skewed"] == [] and not skew.is_up(empty)
    # a feature only one side holds is not compared
    assert [f["feature"] for f in compare(served.drop(columns="temp"), cur)["features"]] == ["distance", "carrier"]


def test_the_models_features_without_the_event_derived_ones():
    numeric, categorical = skew.model_features()
    f = schema.features()
    assert "event_weekday" in f.numeric and "event_hour_utc" in f.numeric
    assert numeric == [c for c in f.numeric if c not in ("event_weekday", "event_hour_utc")]
    assert categorical == f.categorical and {"temp", "distance"} <= set(numeric)


def test_the_alert_names_the_skewed_features_worst_first():
    cur = curated()
    served = served_from(cur)
    served.loc[served.index[::10], "temp"] += 3.0
    served.loc[served.index[:200], "carrier"] = "<!channel>"
    report = {
        "champion": "4",
        "window": ["2013-01-01", "2013-01-02"],
        "report": "file:///r",
        "skew": compare(served, cur),
    }
    title, detail, fields = skew.alert(report, "flights")
    assert title == "Training/serving skew on model v4: temp, carrier"
    assert detail.splitlines()[:2] == [
        "carrier: 20.0% of 1000 flights differ",
        "temp: 10.0% of 1000 flights differ (mean abs diff 0.3)",
    ]
    assert "never" not in title and "does not fix a client" in detail
    assert fields == {"flights compared": 1000, "window": "2013-01-01 .. 2013-01-02", "report": "file:///r"}


# ---------------------------------------------------------------------------------------------- the settings
SKEW = {"max_mismatch": 0.05, "min_rows": 200}


@pytest.mark.parametrize(
    "bad",
    [
        SKEW | {"max_mismatch": 0},  # every feature skewed
        SKEW | {"max_mismatch": -0.1},
        SKEW | {"max_mismatch": 1.5},
        SKEW | {"max_mismatch": "0.05"},
        SKEW | {"max_mismatch": True},
        SKEW | {"min_rows": 0},
        SKEW | {"min_rows": 2.5},
        SKEW | {"min_rows": None},
        {"max_mismatch": 0.05},
        SKEW | {"min_share": 0.1},
        [0.05, 200],
        0.05,
    ],
)
def test_a_skew_setting_out_of_range_is_refused(bad):
    with pytest.raises(ValueError) as err:
        MonitorConfig(skew=bad)
    msg = str(err.value)
    assert "monitoring.yaml" in msg and "skew" in msg and "must be" in msg, msg


def test_the_skew_settings_in_range_are_taken_and_shipped_in_both_files(tmp_path, monkeypatch):
    for good in (SKEW, {"max_mismatch": None, "min_rows": 1}, {"max_mismatch": 1, "min_rows": 100000}):
        assert MonitorConfig(skew=good).skew == good
    assert MonitorConfig().skew == SKEW  # include/config/monitoring.yaml
    assert "skew" not in __import__("mlops_airflow.blocks.forms").blocks.forms.overrides_form(MonitorConfig)
    f = tmp_path / "monitoring.yaml"
    f.write_text(MonitorConfig.FILE.read_text().replace("  min_rows: 200 ", "  min_rows: 0   "))
    with pytest.raises(ValueError, match=r"monitoring.yaml: skew.min_rows = 0: must be an integer >= 1"):
        MonitorConfig.load(f)
    f.write_text("\n".join(ln for ln in MonitorConfig.FILE.read_text().splitlines() if not ln.startswith("  min_rows")))
    with pytest.raises(ValueError, match=r"skew = .*must be a mapping with the keys \['min_rows'\] \(missing\)"):
        MonitorConfig.load(f)
    from include.mlops.core.config import PROJECT_ROOT

    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(PROJECT_ROOT / "examples" / "pizza"))
    pizza = MonitorConfig()
    assert pizza.skew["max_mismatch"] == 0.05 and pizza.skew["min_rows"] <= 140  # judged on a day's sales


# --------------------------------------------------------------------------------- the report and the signal
DAYS = ["2013-01-02", "2013-01-03"]
CFG = MonitorConfig(
    window_days=2,
    numeric={"ks": None, "psi": None, "wasserstein": None},
    categorical={"psi": None, "js": None},
    missing_increase=1.0,
    min_drifted_features=99,
    consecutive_days=2,
    cooldown_days=0,
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = Lake(tmp_path_factory.mktemp("skew").as_uri())
    write_curated(lake, DAYS)
    return lake


@pytest.fixture(scope="module")
def reference(lake):
    fl, we, used = frame.load_window(lake, DAYS[-1], 2)
    f = schema.features()
    return P.build(
        frame.join_sources(fl[fl["is_labelled"]], we), f.numeric, f.categorical, [d.isoformat() for d in used]
    )


def log_requests(lake, date, change=None):
    """The service's log of every curated flight of ``date`` with the request fields it keeps (as the client sent
    them: curation's values, then ``change`` applied)."""
    from include.mlops.serve.request import RequestModel

    fl, we, _ = frame.load_window(lake, date, 1)
    rows = monitor.raw_features(fl, we)
    log = rows[[KEY, *RequestModel().logged]].assign(
        arm="champion", version="1", score=0.2, predicted_at="2013-01-01T00:00:00+00:00"
    )
    log = change(log) if change else log
    folder = layout.predictions(date)
    for f in lake.ls(folder):
        lake.rm(folder, f)
    lake.write_parquet(log.reset_index(drop=True), folder, "part-0.parquet")
    return len(log)


def forecast(log):
    """The client sends a forecast: every fifth flight's temperature two degrees off."""
    log = log.copy()
    log.loc[log.index[::5], "temp"] += 2.0
    return log


def test_the_report_carries_the_skew_its_table_and_the_signal(lake, reference):
    n = sum(log_requests(lake, d) for d in DAYS)
    same = monitor.report(lake, DAYS[-1], {"version": "1"}, reference, CFG)
    assert same["skew"]["rows"] == n and same["skew"]["judged"] and same["skew"]["skewed"] == []
    assert same["signals"]["serving_skew"] is False
    assert {f["feature"] for f in same["skew"]["features"]} >= {"temp", "distance", "carrier", "origin"}
    assert not {"event_weekday", "event_hour_utc"} & {f["feature"] for f in same["skew"]["features"]}

    for d in DAYS:
        log_requests(lake, d, forecast)
    r = monitor.report(lake, DAYS[-1], {"version": "1"}, reference, CFG)
    f = {x["feature"]: x for x in r["skew"]["features"]}
    assert r["skew"]["skewed"] == ["temp"] and r["signals"]["serving_skew"] is True
    assert f["temp"]["mismatch"] == pytest.approx(0.2, abs=0.01) and f["temp"]["mean_abs_diff"] > 0
    assert f["distance"]["mismatch"] == 0.0
    assert lake.read_json(layout.monitoring(DAYS[-1]), layout.MONITORING_REPORT)["skew"] == r["skew"]
    assert lake.read_json(*layout.monitoring_latest())["signals"]["serving_skew"] is True
    page = lake.read_bytes(layout.monitoring(DAYS[-1]), layout.MONITORING_HTML).decode()
    assert "Training/serving skew" in page and "skewed: temp (threshold 5.00%)" in page
    assert "<td>temp</td>" in page and f"<td>{f['temp']['mismatch']:.2%}</td>" in page
    assert "signals up</b>: serving_skew" in page
    # too few rows for the settings: reported, not judged
    few = monitor.report(
        lake, DAYS[-1], {"version": "1"}, reference, CFG.replace(skew={"max_mismatch": 0.05, "min_rows": n + 1})
    )
    assert not few["skew"]["judged"] and few["skew"]["skewed"] == ["temp"] and not few["signals"]["serving_skew"]
    assert "not judged" in lake.read_bytes(layout.monitoring(DAYS[-1]), layout.MONITORING_HTML).decode()


def test_the_html_table_escapes_what_it_shows():
    from include.mlops.monitor.report import _skew

    page = _skew(
        {
            "rows": 300,
            "judged": True,
            "max_mismatch": 0.05,
            "skewed": ["<b>x</b>"],
            "features": [{"feature": "<b>x</b>", "compared": 300, "mismatch": 0.5, "mean_abs_diff": None}],
        }
    )
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "50.00%" in page and 'class="bad"' in page


# ------------------------------------------------------------------------------- an alert, never a retraining
def _write(lake, date, signals):
    lake.write_json(
        {
            "date": date,
            "champion": "3",
            "drifted": [],
            "features": [],
            "signals": dict.fromkeys(monitor.SIGNALS, False) | signals,
            "prediction": {},
            "performance": {"window": {"auc": 0.7}, "reference_auc": 0.7},
            "report": f"file:///r/{date}",
        },
        layout.monitoring(date),
        layout.MONITORING_REPORT,
    )


def test_serving_skew_is_an_alert_and_no_retraining_signal():
    assert set(monitor.ALERTS) == {"serving_skew"} and not set(monitor.ALERTS) & set(monitor.SIGNALS)


def test_serving_skew_up_every_day_never_fires_the_rule_nor_triggers_a_retraining(tmp_path, monkeypatch):
    """The firing rule, and the adapter's check_thresholds with the real rule on a lake: skew up for many days in a
    row fires nothing, records no trigger and sends no drift alert; with decay up too, only decay fires."""
    lake = Lake(tmp_path.as_uri())
    days = [(dt.date(2013, 5, 1) + dt.timedelta(days=i)).isoformat() for i in range(6)]
    for d in days:
        _write(lake, d, {"serving_skew": True})
    d = monitor.decide(lake, days[-1], CFG)
    assert not d["fire"] and d["signals"] == [] and d["reason"] == "" and d["up_today"] == ["serving_skew"]

    adapter = importlib.import_module("plugins.mlops_airflow.tasks.monitor_model")
    sent, pushed = [], {}
    monkeypatch.setattr(importlib.import_module("plugins.mlops_airflow.blocks.connections"), "get_lake", lambda: lake)
    monkeypatch.setattr(
        importlib.import_module("plugins.mlops_airflow.blocks.notifiers"), "notify", lambda *a: sent.append(a)
    )
    monkeypatch.setattr(rollouts, "current", lambda _lake: None)
    ti = type("TI", (), {"xcom_push": lambda self, key, value: pushed.update({key: value})})()
    ctx = {"params": {"date": days[-1], "consecutive_days": 3, "cooldown_days": 0}, "ti": ti, "ds": days[-1]}
    assert adapter.check_thresholds(ctx) is False
    assert sent == [] and monitor.triggers(lake) == [] and pushed["decision"]["fire"] is False

    for d in days[-3:]:
        _write(lake, d, {"serving_skew": True, "decay": True})
    assert adapter.check_thresholds(ctx) is True
    assert pushed["decision"]["signals"] == ["decay"] and "serving" not in pushed["decision"]["reason"]
    assert [t["signals"] for t in monitor.triggers(lake)] == [["decay"]]
