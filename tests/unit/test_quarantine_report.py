"""What a quarantine's report.json shows a person: every failed rule with what was observed, and samples drawn
from the rows that broke it (the injected bad values, not valid-looking ones)."""

from __future__ import annotations

import pytest

from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset
from include.mlops.ingest import ingestion
from include.mlops.ingest.validation import BatchRejected
from include.mlops.simulate.upstream import Upstream

SETTINGS = Settings.from_env()
DATE = "2013-04-11"


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def _quarantine(lake, name: str, fault: str) -> tuple[dict, str]:
    Upstream(lake).publish(DATE, name, fault=fault)
    b = ingestion.batch(dataset(name), DATE)
    ingestion.extract(lake, b)
    with pytest.raises(BatchRejected) as err:
        ingestion.check(lake, b, SETTINGS)
    return lake.read_json(f"quarantine/{name}/date={DATE}", "report.json"), str(err.value)


@pytest.mark.parametrize("name, column", [("flights", "minute"), ("weather", "visib")])
def test_wrong_types_report_names_the_bad_values(lake, name, column):
    report, message = _quarantine(lake, name, "wrong_types")
    failures = {f["rule"]: f for f in report["failures"]}
    assert set(failures) == {"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_between"}
    for rule, f in failures.items():
        assert f["column"] == column
        assert f["observed"], f"{rule}: observed is empty"
        # the upstream wrote "unknown" into a numeric column; those are the samples, with their rows
        assert f["sample_values"] and set(f["sample_values"]) == {"unknown"}, (rule, f["sample_values"])
        assert f["sample_rows"] and all(row[column] == "unknown" for row in f["sample_rows"]), rule
    types = failures["expect_column_values_to_be_in_type_list"]
    assert types["observed"]["value_types"] == {"str": report["rows"]}  # one bad value made the column text
    assert types["observed"]["not_of_type_values"] == {"unknown": types["observed"]["not_of_type"]}
    assert 0 < types["observed"]["not_of_type"] < report["rows"]
    between = failures["expect_column_values_to_be_between"]
    assert between["error"]  # GX itself could not compare text with numbers ...
    assert between["observed"]["non_numeric_values"] == {"unknown": types["observed"]["not_of_type"]}  # ... we did
    # the message (task log, Slack) says it too
    assert f'"unknown" x{types["observed"]["not_of_type"]}' in message
    assert f"expect_column_values_to_be_in_type_list({column})" in message


@pytest.mark.parametrize(
    "fault", ["null_keys", "duplicates", "out_of_range", "missing_column", "extra_column", "truncated"]
)
def test_every_failed_rule_has_an_observed_value(lake, fault):
    report, _ = _quarantine(lake, "flights", fault)
    assert report["failures"]
    for f in report["failures"]:
        assert f["observed"] not in (None, {}, []), f
        column = f["column"]
        if f["sample_rows"] and column and "," not in column and f["sample_values"]:
            # rows are the failing ones: each carries one of the sample values in the rule's column
            shown = {str(v) for v in f["sample_values"]}
            assert all(str(row.get(column)) in shown or row.get(column) is None for row in f["sample_rows"]), f


def test_null_key_samples_are_the_rows_with_the_null(lake):
    report, _ = _quarantine(lake, "flights", "null_keys")
    (f,) = report["failures"]
    assert f["observed"]["unexpected_count"] == f["unexpected_count"] > 0
    assert f["sample_rows"] and all(row["carrier"] is None for row in f["sample_rows"])


def test_missing_column_report_names_it(lake):
    report, message = _quarantine(lake, "flights", "missing_column")
    table = next(f for f in report["failures"] if f["rule"] == "expect_table_columns_to_match_set")
    assert table["observed"]["missing"] == ["minute"] and table["observed"]["unexpected"] == []
    assert "missing column(s) ['minute']" in message
    others = [f for f in report["failures"] if f["column"] == "minute"]
    assert others and all(f["observed"] == {"column_present": False} for f in others)


def test_without_bytes_the_landing_drop_is_quarantined_before_a_staged_copy(lake):
    """``quarantine`` given no bytes moves the landing drop when there is one (the drop as upstream wrote it), and
    falls back to this run's staged copy only when landing holds none."""
    from include.mlops.core import layout
    from include.mlops.ingest.validation import ValidationReport

    Upstream(lake).publish(DATE, "weather")
    b = ingestion.batch(dataset("weather"), DATE)
    landing = layout.landing("weather", DATE)
    drop = lake.read_bytes(landing, b.spec.landing_file)
    report = ValidationReport("weather", DATE, "weather", False, 0, [], 0, [], validated_at="2013-04-12T00:00:00")
    q = b.folder("quarantine")
    # a landing drop and no staged copy at all: the landing drop is the one moved
    ingestion.quarantine(lake, b, report)
    assert lake.read_bytes(q, b.spec.landing_file) == drop and not lake.ls(landing)
    # no landing drop: the staged copy is
    lake.write_bytes(b"staged,bytes\n", b.staging, b.spec.landing_file)
    ingestion.quarantine(lake, b, report)
    assert lake.read_bytes(q, b.spec.landing_file) == b"staged,bytes\n"


def test_a_values_rule_reports_gx_s_counts_of_the_unexpected_values(lake):
    """GX is asked for its summary (``RESULT_FORMAT``): a rule over a column's values reports how often each
    unexpected value occurs, and the failing rows' index, not only the values."""
    report, _ = _quarantine(lake, "flights", "out_of_range")
    counted = [
        f
        for f in report["failures"]
        if isinstance(f["observed"], dict) and f["observed"].get("unexpected_value_counts")
    ]
    assert counted, report["failures"]
    for f in counted:
        assert all({"value", "count"} <= set(c) for c in f["observed"]["unexpected_value_counts"]), f
