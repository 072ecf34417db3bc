"""Which data dates one ``monitor_model`` run reports on and judges when several Asset events triggered it (days
ingested faster than monitoring ran): every flights date its events name gets its report, in date order whatever
the order of the events; the run's check of the prediction service goes with the latest date's report, and the
firing rule judges the latest date. The adapter's callables are run with a stand-in context, the platform's
calls replaced by recorders: no Airflow run.

The adapter is imported as ``plugins.mlops_airflow.tasks.monitor_model`` (``plugins/`` is a namespace package from the
project's root), the name ``make mutation`` gives the mutants of ``plugins/mlops_airflow/tasks/monitor_model.py``: under
its Airflow name (``mlops_airflow.tasks.monitor_model``) mutmut would not switch its mutants on."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from include.mlops.core import registry, rollouts
from include.mlops.monitor import monitor

PACKAGE = "plugins.mlops_airflow"
adapter = importlib.import_module(PACKAGE + ".tasks.monitor_model")
assets = importlib.import_module(PACKAGE + ".blocks.assets")

D1, D2, D3 = "2013-02-09", "2013-02-10", "2013-02-11"


def event(date: str | None, **extra) -> SimpleNamespace:
    return SimpleNamespace(extra=({"date": date} if date else {}) | extra)


class TaskInstance:
    def __init__(self, service=None):
        self.service, self.pushed = service, {}

    def xcom_pull(self, task_ids):
        assert task_ids == "service_health"
        return self.service

    def xcom_push(self, key, value):
        self.pushed[key] = value


def context(events, **more) -> dict:
    return {"triggering_asset_events": events, "params": {}, "ti": TaskInstance(), **more}


ORDERS = {
    "in date order": {assets.curated("flights"): [event(D1), event(D2)]},
    "latest first": {assets.curated("flights"): [event(D2), event(D1)]},
    "one asset each": {assets.quarantined("flights"): [event(D2)], assets.curated("flights"): [event(D1)]},
    "datetimes and a repeat": {
        assets.curated("flights"): [event(D2 + "T00:00:00+00:00"), event(D1), event(D2)],
        assets.curated("weather"): [event(D3)],  # weather alone does not make a flights date
    },
    "keyed by the asset's name": {"quarantined_flights": [event(D2)], "curated_flights": [event(D1)]},
}
THREE = {assets.curated("flights"): [event(D3), event(D1)], assets.quarantined("flights"): [event(D2)]}


@pytest.mark.parametrize("events", ORDERS.values(), ids=ORDERS.keys())
def test_every_flights_date_in_date_order(events):
    """Kills: the dates in event order (the latest not last), a date lost or doubled, a weather event counted."""
    assert adapter.data_dates(context(events)) == [D1, D2]
    assert adapter.data_dates(context(THREE)) == [D1, D2, D3]


def test_without_a_dated_event_the_run_date_is_used():
    events = {assets.curated("flights"): [event(None, rows=10)], assets.curated("weather"): [event(D3)]}
    assert adapter.data_dates(context(events, ds=D1)) == [D1]
    assert adapter.data_dates(context({}, ds=D1, params={"date": D2})) == [D2]
    assert adapter.data_dates({"ds": D1, "params": {}}) == [D1]  # a manual run: no events at all


LAKE = object()  # the lake the adapter gets: passed on to every call that needs it


@pytest.fixture
def platform(monkeypatch):
    """The platform's calls the adapter makes, recorded with their arguments: a champion with its profile, the
    lake, the report per date, the firing rule's decision (``platform["decision"]``, changed by a test)."""
    from include.mlops.core import layout
    from include.mlops.monitor.config import MonitorConfig

    calls = {"report": [], "decide": [], "notify": [], "record": [], "champion": {"version": "7", "run_id": "r7"}}
    calls["remedy"] = ("retrain", "1 of 2 retrainings in a row failed the gate with nothing better to go back to")
    calls["decision"] = {
        "fire": True,
        "champion": "7",
        "signals": ["drift", "decay"],
        "reason": "drift and decay up 3 consecutive days",
        "evidence": {f"f{i}": [f"psi {i}", "ks"] for i in range(7)},
        "held": [],
        "up_today": [],
    }

    def alias_version(alias):
        assert alias == "champion"
        return calls["champion"]

    def load_artifact(version, name):
        assert (version, name) == ("7", layout.TRAINING_PROFILE)
        return calls.get("profile", {"profile of": version})

    def report(lake, date, champion, profile, cfg, service=None):
        assert lake is LAKE and champion == calls["champion"] and profile == {"profile of": "7"}
        assert isinstance(cfg, MonitorConfig)
        calls["report"].append((date, service))
        signals = {"drift": date == D2, "decay": False}
        return {
            "date": date,
            "champion": "7",
            "drifted": ["distance"] * (date == D2),
            "signals": signals,
            "report": f"r/{date}",
        }

    def current(lake):
        assert lake is LAKE
        return {"status": "promoted", "version": "7"}

    def decide(lake, date, cfg, rollout=None):
        assert lake is LAKE and isinstance(cfg, MonitorConfig) and rollout == {"status": "promoted", "version": "7"}
        calls["decide"].append(date)
        return calls["decision"] | {"date": date, "report": f"r/{date}"}

    def record_trigger(lake, d):
        assert lake is LAKE
        calls["record"].append(d["date"])
        calls["recorded"] = d

    def remedy(lake, date, cfg, tunable):
        assert lake is LAKE and isinstance(cfg, MonitorConfig) and tunable is True  # params.yaml has tune:
        return calls["remedy"]

    monkeypatch.setattr(registry, "alias_version", alias_version)
    monkeypatch.setattr(registry, "load_artifact", load_artifact)
    monkeypatch.setattr(importlib.import_module(PACKAGE + ".blocks.connections"), "get_lake", lambda: LAKE)
    monkeypatch.setattr(rollouts, "current", current)
    monkeypatch.setattr(monitor, "report", report)
    monkeypatch.setattr(monitor, "decide", decide)
    monkeypatch.setattr(monitor, "record_trigger", record_trigger)
    monkeypatch.setattr(monitor, "remedy", remedy)
    monkeypatch.setattr(
        importlib.import_module(PACKAGE + ".blocks.notifiers"),
        "notify",
        lambda ctx, kind, title, body, fields: calls["notify"].append((ctx["ti"], kind, title, body, fields)),
    )
    return calls


@pytest.fixture
def logged(caplog):
    caplog.set_level("INFO", logger=adapter.__name__)
    return lambda: [r.getMessage() for r in caplog.records if r.name == adapter.__name__]


@pytest.mark.parametrize("events", ORDERS.values(), ids=ORDERS.keys())
def test_each_date_gets_its_report_and_the_latest_carries_the_service_check(platform, logged, events):
    """Kills: the service's section put on another date's report (or on none), a date's report skipped, the
    run's summary of a date that is not the latest."""
    ctx = context(events)
    ctx["ti"].service = {"status": "ok", "requests": 40}
    got = adapter.report(ctx)
    assert platform["report"] == [(D1, None), (D2, {"status": "ok", "requests": 40})]
    assert got == {
        "date": D2,
        "champion": "7",
        "drifted": ["distance"],
        "signals": {"drift": True, "decay": False},
        "report": f"r/{D2}",
    }
    assert logged() == [
        f"monitoring {D1}, champion v7: drifted none; signals up: none; report r/{D1}",
        f"monitoring {D2}, champion v7: drifted ['distance']; signals up: ['drift']; report r/{D2}",
    ]


def test_three_dates_the_service_check_on_the_last(platform):
    ctx = context(THREE)
    ctx["ti"].service = {"status": "ok"}
    assert adapter.report(ctx)["date"] == D3
    assert platform["report"] == [(D1, None), (D2, None), (D3, {"status": "ok"})]


def test_a_failed_service_check_is_said_on_the_latest_report(platform):
    adapter.report(context(ORDERS["latest first"]))
    assert platform["report"] == [
        (D1, None),
        (
            D2,
            {
                "status": "not checked",
                "note": "service_health returned nothing in this run (it failed: see its log and its failure alert)",
            },
        ),
    ]


def test_no_champion_or_no_profile_skips_the_report(platform):
    from airflow.sdk.exceptions import AirflowSkipException

    platform["champion"] = None
    with pytest.raises(AirflowSkipException, match="^no champion yet: nothing to monitor$"):
        adapter.report(context(ORDERS["in date order"]))
    platform["champion"], platform["profile"] = {"version": "7", "run_id": "r7"}, None
    with pytest.raises(AirflowSkipException, match=r"^champion v7 has no reference profile \(profile.json\)$"):
        adapter.report(context(ORDERS["in date order"]))
    assert platform["report"] == []


@pytest.mark.parametrize("events", [*ORDERS.values(), THREE], ids=[*ORDERS.keys(), "three dates"])
def test_the_firing_rule_judges_the_latest_date(platform, events):
    """Kills: the rule judging the earliest date (or the first event's) of a run that several days triggered."""
    ctx = context(events)
    latest = adapter.data_dates(ctx)[-1]
    assert adapter.check_thresholds(ctx) is True
    assert platform["decide"] == [latest] and platform["record"] == [latest]
    assert ctx["ti"].pushed["decision"]["date"] == latest


def test_a_fired_rule_alerts_with_its_reason_and_evidence(platform):
    ctx = context(ORDERS["latest first"])
    adapter.check_thresholds(ctx)
    detail = "\n".join(f"f{i}: psi {i}; ks" for i in range(6))  # the first six features' evidence
    assert platform["notify"] == [
        (
            ctx["ti"],
            "drift",
            "Drift on model v7: retraining",
            "drift and decay up 3 consecutive days\n" + detail,
            {"signals": "drift, decay", "report": f"r/{D2}"},
        )
    ]


def test_a_fire_after_failed_retrainings_starts_a_study_and_says_why(platform):
    """The remedy (``monitor.remedy``) in the alert and the trigger's record, with the run id the trigger task
    gives the run it starts; the branch follows it."""
    ctx = context(ORDERS["latest first"])
    platform["remedy"] = ("tune", "the retrainings of the last 2 triggers (a, b) failed the gate")
    assert adapter.check_thresholds(ctx) is True
    ((_, kind, title, body, _),) = platform["notify"]
    assert kind == "drift" and title == "Drift on model v7: a tuning study, then retraining"
    assert body.startswith("drift and decay up 3 consecutive days\nthe retrainings of the last 2 triggers (a, b)")
    recorded = platform["recorded"]
    assert recorded["remedy"] == "tune" and recorded["run_id"].startswith(f"monitoring__{D2}__"), recorded
    assert ctx["ti"].pushed["decision"] == recorded
    assert adapter.remedy(ctx | {"ti": _Pulled(ctx["ti"])}) == "trigger_tune_model"
    platform["remedy"] = ("retrain", "off")
    adapter.check_thresholds(ctx)
    assert adapter.remedy(ctx | {"ti": _Pulled(ctx["ti"])}) == "trigger_train_model"
    assert "a tuning study" not in platform["notify"][-1][2]


class _Pulled:
    """A task instance whose pulls read what ``check_thresholds`` pushed."""

    def __init__(self, ti):
        self.ti = ti

    def xcom_pull(self, task_ids, key):
        assert (task_ids, key) == ("check_thresholds", "decision")
        return self.ti.pushed["decision"]


def test_held_or_quiet_signals_neither_alert_nor_trigger(platform, logged):
    ctx = context(ORDERS["in date order"])
    platform["decision"] |= {"fire": False, "held": ["cool-down until 2013-02-12"]}
    assert adapter.check_thresholds(ctx) is False
    platform["decision"] |= {"signals": [], "up_today": []}
    assert adapter.check_thresholds(ctx) is False
    platform["decision"] |= {"up_today": ["drift"]}
    assert adapter.check_thresholds(ctx) is False
    assert platform["notify"] == [] and platform["record"] == [] and platform["decide"] == [D2] * 3
    assert ctx["ti"].pushed["decision"]["fire"] is False
    days = adapter._cfg(ctx).consecutive_days  # monitoring.yaml's
    assert logged() == [
        "signals ['drift', 'decay'] fired but are held back: ['cool-down until 2013-02-12']",
        f"no signal up {days} consecutive days (up today: none)",
        f"no signal up {days} consecutive days (up today: ['drift'])",
    ]


def test_a_serving_skew_alerts_once_for_the_latest_skewed_date_and_never_retrains(platform, monkeypatch):
    """Kills: no alert on a skew, one per date, the earliest date's, a skew alert sent without the signal up, a
    skew that reaches the firing rule or records a trigger."""
    adapter.report(context(ORDERS["in date order"]))
    assert platform["notify"] == []  # no skew up: no alert
    section = {
        "rows": 300,
        "judged": True,
        "max_mismatch": 0.05,
        "skewed": ["temp"],
        "features": [{"feature": "temp", "compared": 300, "mismatch": 0.2, "mean_abs_diff": 2.0}],
    }
    fake = monitor.report

    def report(lake, date, champion, profile, cfg, service=None):
        r = fake(lake, date, champion, profile, cfg, service)
        return r | {"signals": r["signals"] | {"serving_skew": True}, "skew": section, "window": [D1, date]}

    monkeypatch.setattr(monitor, "report", report)
    ctx = context(ORDERS["latest first"])
    assert adapter.report(ctx)["signals"]["serving_skew"] is True
    [(ti, kind, title, detail, fields)] = platform["notify"]
    assert (ti, kind, title) == (ctx["ti"], "skew", "Training/serving skew on model v7: temp")
    assert detail.startswith("temp: 20.0% of 300 flights differ (mean abs diff 2)") and "does not fix" in detail
    assert fields == {"flights compared": 300, "window": f"{D1} .. {D2}", "report": f"r/{D2}"}
    assert platform["decide"] == [] and platform["record"] == []
