import json

import pytest

from include.mlops.core.config import Settings
from include.mlops.core.schema import dataset
from include.mlops.ingest.validation import BatchRejected, read_csv, validate
from include.mlops.simulate.plan import CORRUPT_FAULTS
from include.mlops.simulate.upstream import corrupt, day_table, to_csv_bytes

SETTINGS = Settings.from_env()

# one day per season plus the hard ones: the 2013-02-09 blizzard (57 % cancelled), the DST change days
GOOD_DAYS = ["2013-01-01", "2013-02-09", "2013-03-10", "2013-06-15", "2013-09-30", "2013-11-03", "2013-12-30"]


def _validate(name, data: bytes, date):
    spec = dataset(name)
    df = read_csv(data, name, date)
    return validate(df, spec, date, SETTINGS.expectations_dir)


@pytest.mark.parametrize("date", GOOD_DAYS)
@pytest.mark.parametrize("name", ["flights", "weather"])
def test_real_days_pass(name, date):
    report = _validate(name, to_csv_bytes(day_table(name, date)), date)
    assert report.success, report.summary()
    assert report.evaluated > 30


EXPECTED_RULE = {
    "missing_column": "expect_table_columns_to_match_set",
    "extra_column": "expect_table_columns_to_match_set",
    "wrong_types": "expect_column_values_to_be_in_type_list(minute)",
    "null_keys": "expect_column_values_to_not_be_null(carrier)",
    "duplicates": "expect_compound_columns_to_be_unique(year,month,day,carrier,flight,origin)",
    "out_of_range": "expect_column_values_to_be_between(distance)",
    "truncated": "expect_column_values_to_not_be_null(time_hour)",
    "empty": "non_empty_file",
}


@pytest.mark.parametrize("kind", CORRUPT_FAULTS)
def test_each_corruption_is_caught_by_its_rule(kind):
    data = corrupt(day_table("flights", "2013-01-03"), kind, dataset("flights"))
    try:
        report = _validate("flights", data, "2013-01-03")
    except BatchRejected as exc:  # unreadable files are rejected while parsing
        report = exc.report
    assert not report.success
    assert EXPECTED_RULE[kind] in report.failed_rules
    message = report.summary()
    assert "flights/2013-01-03" in message and EXPECTED_RULE[kind].split("(")[0] in message
    json.dumps(report.to_dict())  # the quarantine report is plain JSON


def test_failure_names_the_value_and_sample_rows():
    report = _validate(
        "flights", corrupt(day_table("flights", "2013-01-03"), "out_of_range", dataset("flights")), "2013-01-03"
    )
    (f,) = [f for f in report.failures if f.column == "distance"]
    assert f.unexpected_count > 0 and -999.0 in f.sample_values
    assert f.sample_rows and f.sample_rows[0]["distance"] == -999.0
    assert "-999.0" in f.describe()


def test_a_drop_for_another_date_is_rejected():
    report = _validate("flights", to_csv_bytes(day_table("flights", "2013-01-03")), "2013-01-04")
    assert "expect_column_values_to_be_between(day)" in report.failed_rules


def test_unparseable_file_is_rejected_naming_the_batch():
    with pytest.raises(BatchRejected, match="flights/2013-01-03") as err:
        read_csv(b'a,b\n"unterminated,1\n', "flights", "2013-01-03")
    assert err.value.report.failed_rules == ["readable_csv"]
