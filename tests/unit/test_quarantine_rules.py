"""Quarantine and the validation report that goes with it: what a person reading ``report.json`` or the Slack
message learns about a rejected drop. GX runs only where the test needs its verdict."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from include.mlops.core.config import Settings
from include.mlops.core.jsonsafe import json_safe
from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset
from include.mlops.ingest import ingestion
from include.mlops.ingest.validation import (
    BatchRejected,
    Failure,
    ValidationReport,
    _failure,
    _short,
    read_csv,
    validate,
)
from include.mlops.simulate.upstream import Upstream, corrupt, day_table

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
import great_expectations  # noqa: E402,F401 - imported once at collection (mutmut forks its runs after it)

DATE = "2013-01-02"
Q = f"quarantine/flights/date={DATE}"


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def _report(rule="expect_column_values_to_not_be_null", column="carrier", validated_at="2026-01-01T10:11:12+00:00"):
    f = Failure(
        rule=rule,
        column=column,
        observed=None,
        expected={"mostly": 1.0},
        unexpected_count=3,
        unexpected_percent=0.3,
        sample_values=[None],
        sample_rows=[{"carrier": None}],
    )
    return ValidationReport(
        "flights", DATE, "flights", False, 1000, ["carrier"], 54, [f], source="landing", validated_at=validated_at
    )


def _staged(lake, fault="null_keys"):
    Upstream(lake).publish(DATE, "flights", fault=fault)
    b = ingestion.batch(dataset("flights"), DATE)
    ingestion.extract(lake, b)
    return b, lake.read_bytes(f"landing/flights/date={DATE}", "flights.csv")


def test_quarantine_keeps_the_drop_and_its_report_and_clears_landing_and_staging(lake):
    """kills: quarantine without report.json."""
    b, dropped = _staged(lake)
    uri = ingestion.quarantine(lake, b, _report())
    assert uri == lake.uri(Q)
    assert sorted(lake.ls(Q)) == ["flights.csv", "report.json"]
    assert lake.read_bytes(Q, "flights.csv") == dropped
    report = lake.read_json(Q, "report.json")
    assert report["failed_rules"] == ["expect_column_values_to_not_be_null(carrier)"]
    assert report["quarantined_at"] >= "2026" and report["validated_at"] == "2026-01-01T10:11:12+00:00"
    assert report["failures"][0]["sample_rows"] == [{"carrier": None}]
    assert not lake.exists(f"landing/flights/date={DATE}") and not lake.exists(f"staging/flights/date={DATE}")


def test_quarantine_keeps_the_drop_as_upstream_delivered_it(lake, caplog):
    b, dropped = _staged(lake)
    lake.write_bytes(b"a staged copy that differs", f"staging/flights/date={DATE}", "flights.csv")
    report = _report()
    report.failures.append(Failure("expect_table_row_count_to_be_between", None, 5, {}))
    with caplog.at_level("WARNING", logger="include.mlops.ingest.ingestion"):
        uri = ingestion.quarantine(lake, b, report)
    assert lake.read_bytes(Q, "flights.csv") == dropped  # landing's bytes, not staging's
    assert caplog.messages == [
        f"batch flights/{DATE} quarantined at {uri}: "
        "expect_column_values_to_not_be_null(carrier), expect_table_row_count_to_be_between"
    ]


def test_quarantine_takes_the_staged_copy_when_landing_is_gone(lake):
    b, dropped = _staged(lake)
    lake.rm(f"landing/flights/date={DATE}", "flights.csv")  # only the _SUCCESS marker is left
    ingestion.quarantine(lake, b, _report())
    assert lake.read_bytes(Q, "flights.csv") == dropped
    assert not lake.exists(f"staging/flights/date={DATE}")


def test_a_second_rejection_moves_the_first_to_history_named_by_its_time(lake):
    b, first = _staged(lake)
    ingestion.quarantine(lake, b, _report())
    b, second = _staged(lake, fault="extra_column")
    ingestion.quarantine(
        lake,
        b,
        _report(rule="expect_table_columns_to_match_set", column=None, validated_at="2026-01-02T00:00:00+00:00"),
    )
    assert sorted(lake.ls(Q)) == ["flights.csv", "history", "report.json"]
    assert lake.ls(Q, "history") == ["2026-01-01T101112+0000"]
    older = f"{Q}/history/2026-01-01T101112+0000"
    assert sorted(lake.ls(older)) == ["flights.csv", "report.json"]
    assert lake.read_bytes(older, "flights.csv") == first and lake.read_bytes(Q, "flights.csv") == second
    assert lake.read_json(older, "report.json")["failed_rules"] == ["expect_column_values_to_not_be_null(carrier)"]
    assert lake.read_json(Q, "report.json")["failed_rules"] == ["expect_table_columns_to_match_set"]
    # a third: history keeps both earlier ones, and the history folder itself is never moved into history
    b, _ = _staged(lake, fault="duplicates")
    ingestion.quarantine(lake, b, _report(validated_at="2026-01-03T00:00:00+00:00"))
    assert sorted(lake.ls(Q, "history")) == ["2026-01-01T101112+0000", "2026-01-02T000000+0000"]


def test_everything_of_an_earlier_rejection_moves_to_history(lake):
    b, _ = _staged(lake)
    ingestion.quarantine(lake, b, _report())
    lake.write_bytes(b"checked by ops", Q, "notes.txt")  # whatever else lay with it
    b, _ = _staged(lake, fault="extra_column")
    ingestion.quarantine(lake, b, _report(validated_at="2026-01-02T00:00:00+00:00"))
    assert sorted(lake.ls(Q)) == ["flights.csv", "history", "report.json"]
    assert sorted(lake.ls(Q, "history", "2026-01-01T101112+0000")) == ["flights.csv", "notes.txt", "report.json"]


def test_a_quarantine_folder_without_a_report_is_no_earlier_rejection(lake):
    lake.write_bytes(b"stray", Q, "stray.txt")
    b, dropped = _staged(lake)
    ingestion.quarantine(lake, b, _report())
    assert lake.read_bytes(Q, "flights.csv") == dropped and not lake.exists(Q, "history")


def test_an_earlier_report_without_its_time_goes_to_history_as_earlier(lake):
    b, _ = _staged(lake)
    ingestion.quarantine(lake, b, _report())
    lake.write_json(
        {k: v for k, v in lake.read_json(Q, "report.json").items() if k != "validated_at"}, Q, "report.json"
    )
    b, _ = _staged(lake, fault="extra_column")
    ingestion.quarantine(lake, b, _report())
    assert lake.ls(Q, "history") == ["earlier"]


# ----------------------------------------------------------------------------------------- the report text
def test_a_failure_describes_itself():
    assert (
        Failure(
            "rule_a", "distance", None, {}, unexpected_count=2, unexpected_percent=12.5, sample_values=[-1, -2, -3, -4]
        ).describe()
        == "rule_a(distance): 2 unexpected value(s) (12.5 %), e.g. [-1, -2, -3]"
    )
    assert Failure("rule_b", None, None, {}, unexpected_count=0).describe() == "rule_b: 0 unexpected value(s)"
    assert Failure("rule_c", "x", {"min": 3}, {}).describe() == 'rule_c(x): observed {"min": 3}'
    assert (
        Failure("rule_d", "x", 5, {}, unexpected_count=1, error="boom").describe()
        == "rule_d(x): could not be evaluated: boom"
    )
    long = Failure("rule_e", None, "y" * 500, {}).describe()
    assert long.endswith('..."') is False and long.endswith("...") and len(long) == len("rule_e: observed ") + 160


def test_the_summary_and_the_json_report():
    r = ValidationReport(
        "flights",
        DATE,
        "flights",
        False,
        10,
        ["a"],
        54,
        [Failure("rule_a", "a", None, {}, unexpected_count=1, unexpected_percent=10.0), Failure("rule_t", None, 5, {})],
    )
    assert r.failed_rules == ["rule_a(a)", "rule_t"]
    assert r.summary() == (
        f"Batch flights/{DATE} rejected by suite 'flights': 2 of 54 rule(s) failed\n"
        "  - rule_a(a): 1 unexpected value(s) (10.0 %)\n"
        "  - rule_t: observed 5"
    )
    assert r.summary("file:///q").endswith("\n  quarantined at file:///q")
    d = r.to_dict()
    assert d["failed_rules"] == ["rule_a(a)", "rule_t"] and d["evaluated"] == 54 and d["success"] is False
    json.dumps(d)
    exc = BatchRejected(r, "file:///q")
    assert exc.report is r and exc.quarantine_uri == "file:///q" and str(exc) == r.summary("file:///q")


def test_jsonable_turns_what_gx_and_pandas_return_into_plain_json():
    got = json_safe(
        {
            1: [np.int64(3), np.float32(0.5), float("nan"), float("inf"), pd.NA, pd.NaT, None, True],
            "t": (pd.Timestamp("2013-01-02", tz="UTC"), "s", b"raw"),
        }
    )
    assert got == {"1": [3, 0.5, None, None, None, None, None, True], "t": ["2013-01-02 00:00:00+00:00", "s", "b'raw'"]}
    assert json_safe(np.array([1, 2])) == "[1 2]"  # .item() refuses arrays: kept readable
    assert _short({"a": 1}) == '{"a": 1}' and _short("x" * 10, limit=8) == '"xxxx...'
    assert _short("x" * 6, limit=8) == '"xxxxxx"'  # exactly the limit: kept whole


def test_unreadable_and_empty_files_are_rejected_as_such():
    with pytest.raises(BatchRejected) as err:
        read_csv(b"  \n", "flights", DATE)
    f = err.value.report.failures[0]
    assert (f.rule, f.observed, f.expected) == ("non_empty_file", "3 byte(s)", {"min_rows": 1, "header": True})
    assert err.value.report.evaluated == 1 and err.value.report.rows == 0
    with pytest.raises(BatchRejected) as err:
        read_csv(b'a,b\n"x,1\n', "flights", DATE)
    f = err.value.report.failures[0]
    assert f.rule == "readable_csv" and f.expected == {"format": "CSV with a header row"}
    assert "EOF" in f.observed and "\n" not in f.observed
    assert read_csv(b"a;b\n1;2\n", "flights", DATE, {"sep": ";"}).to_dict("list") == {"a": [1], "b": [2]}


@pytest.mark.parametrize(
    "data, options, rule",
    [(b"", None, "non_empty_file"), (b"a,b\n1,2\n", {"usecols": ["c" * 400]}, "readable_csv")],
    ids=["empty", "unreadable"],
)
def test_a_rejected_file_has_a_whole_report(data, options, rule):
    with pytest.raises(BatchRejected) as err:
        read_csv(data, "weather", DATE, options)
    r = err.value.report
    assert (r.dataset, r.date, r.suite, r.success, r.rows, r.columns, r.evaluated) == (
        "weather",
        DATE,
        rule,
        False,
        0,
        [],
        1,
    )
    assert r.failed_rules == [rule] and str(err.value).startswith(f"Batch weather/{DATE} rejected by suite '{rule}'")
    if rule == "readable_csv":
        assert len(r.failures[0].observed) == 300  # a long parser message, cut


def test_a_gx_result_becomes_a_failure_with_sample_rows():
    df = pd.DataFrame({"distance": [100.0, -999.0, 200.0, -5.0]})
    r = {
        "expectation_config": {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "distance", "min_value": 17, "batch_id": "b-1"},
        },
        "result": {
            "unexpected_count": 2,
            "unexpected_percent": 50.0,
            "partial_unexpected_list": [-999.0, -5.0],
            "partial_unexpected_index_list": [1, 3, 99],
        },
        "exception_info": {"raised_exception": False},
    }
    f = _failure(r, df)
    assert (f.rule, f.column, f.expected) == ("expect_column_values_to_be_between", "distance", {"min_value": 17})
    assert f.sample_values == [-999.0, -5.0] and f.unexpected_count == 2 and f.unexpected_percent == 50.0
    assert f.sample_rows == [{"distance": -999.0}, {"distance": -5.0}] and f.error is None
    compound = {
        "expectation_config": {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "b"]}},
        "result": {"observed_value": 7},
        "exception_info": {"some-id": {"raised_exception": True, "exception_message": "bad column"}},
    }
    f = _failure(compound, df)
    assert f.column == "a,b" and f.error == "bad column" and f.observed == 7
    assert f.sample_rows == []  # no index of failing rows: no samples (never rows that did not fail)
    top = {"expectation_config": {}, "exception_info": {"raised_exception": True, "exception_message": "x"}}
    f = _failure(top, df.iloc[0:0])
    assert f.rule == "unknown" and f.error == "x" and f.sample_rows == [] and f.sample_values == []


def test_validate_puts_table_rules_first_and_passes_the_batch_date():
    """One real GX run: a drop of the wrong day with a column missing."""
    settings = Settings.from_env()
    raw = day_table("flights", "2013-01-03").drop(columns=["distance"])
    report = validate(raw, dataset("flights"), "2013-01-04", settings.expectations_dir, source="here")
    assert not report.success and report.date == "2013-01-04" and report.source == "here"
    assert (report.dataset, report.suite, report.columns) == ("flights", "flights", [str(c) for c in raw.columns])
    assert report.failures[0].rule == "expect_table_columns_to_match_set"
    assert "expect_column_values_to_be_between(day)" in report.failed_rules  # the batch's own date
    rest = [(f.rule, f.column or "") for f in report.failures[1:]]
    assert rest == sorted(rest) and report.rows == len(raw) and report.evaluated > 30
    good = validate(
        read_csv(
            corrupt(day_table("flights", "2013-01-03"), "out_of_range", dataset("flights")), "flights", "2013-01-03"
        ),
        dataset("flights"),
        "2013-01-03",
        settings.expectations_dir,
    )
    assert [f.column for f in good.failures] == ["distance"] and not math.isnan(good.failures[0].unexpected_percent)
    # the batch date may come as a timestamp (a DAG's logical date): its day is the batch's
    clean = validate(
        day_table("flights", "2013-01-03"),
        dataset("flights"),
        pd.Timestamp("2013-01-03 00:00:00", tz="UTC"),
        settings.expectations_dir,
    )
    assert clean.success is True and clean.failures == [] and clean.date == "2013-01-03"
