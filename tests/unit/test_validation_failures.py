"""``validation._failure``: one failed rule as the quarantine report shows it, from GX's result and the batch,
without running GX (each case is the result GX hands back). The observed value (GX's, else its counts and the
first ten value counts), the sample rows (GX's index, else the rows holding the values GX named), and what the
report finds itself: the column set's missing and unexpected columns, the values not of a type, the values GX
could not compare with a range. Found by the complete mutation run of ``_failure`` (bench/README.md)."""

from __future__ import annotations

import pandas as pd
import pytest

from include.mlops.ingest.validation import _failure


def result(rule, kwargs, res=None, error=None):
    info = {"raised_exception": True, "exception_message": error} if error else {"raised_exception": False}
    return {"expectation_config": {"type": rule, "kwargs": kwargs}, "result": res or {}, "exception_info": info}


def test_gx_counts_become_the_observed_value_and_named_values_find_their_rows():
    df = pd.DataFrame({"carrier": ["UA", "ZZ", "AA", "QQ"], "n": [1, 2, 3, 4]})
    counts = [{"value": f"V{i}", "count": 12 - i} for i in range(12)]
    f = _failure(
        result(
            "expect_column_values_to_be_in_set",
            {"column": "carrier", "value_set": ["UA", "AA"]},
            {
                "element_count": 4,
                "unexpected_count": 2,
                "unexpected_percent": 50.0,
                "missing_count": 0,
                "partial_unexpected_counts": counts,
                "partial_unexpected_list": ["ZZ", "QQ"],  # the values, without their rows' index
            },
        ),
        df,
    )
    assert f.observed == {
        "element_count": 4,
        "unexpected_count": 2,
        "unexpected_percent": 50.0,
        "missing_count": 0,
        "unexpected_value_counts": counts[:10],
    }
    assert f.sample_values == ["ZZ", "QQ"]
    assert f.sample_rows == [{"carrier": "ZZ", "n": 2}, {"carrier": "QQ", "n": 4}]  # the rows holding those values
    assert f.finding is None and f.error is None and f.expected == {"value_set": ["UA", "AA"]}


def test_no_observed_value_and_no_counts_is_none():
    f = _failure(result("expect_column_values_to_not_be_null", {"column": "carrier"}), pd.DataFrame({"carrier": []}))
    assert f.observed is None and f.sample_rows == [] and f.finding is None


@pytest.mark.parametrize(
    "expected, finding",
    [
        (["a", "b", "c"], "missing column(s) ['b']; unexpected column(s) ['d']"),
        (["a", "b", "c", "d"], "missing column(s) ['b']"),
        (["a"], "unexpected column(s) ['c', 'd']"),
        (["d", "c", "a"], None),
    ],
)
def test_the_column_set_names_the_missing_and_the_unexpected_columns(expected, finding):
    df = pd.DataFrame({"a": [1], "c": [2], "d": [3]})
    f = _failure(result("expect_table_columns_to_match_set", {"column_set": expected}), df)
    missing, extra = sorted(set(expected) - {"a", "c", "d"}), [c for c in "acd" if c not in expected]
    assert f.observed == {"columns": ["a", "c", "d"], "missing": missing, "unexpected": extra}
    assert f.finding == finding


def test_a_column_set_rule_without_its_set_keeps_gx_s_observed_value():
    f = _failure(result("expect_table_columns_to_match_set", {}, {"observed_value": ["a"]}), pd.DataFrame({"a": [1]}))
    assert f.observed == ["a"] and f.finding is None


def test_values_not_of_the_type_are_found_with_the_column_s_value_types():
    df = pd.DataFrame({"dep_delay": pd.Series([1, "x", 3, "late"], dtype=object)})
    f = _failure(
        result(
            "expect_column_values_to_be_of_type", {"column": "dep_delay", "type_": "int"}, {"observed_value": "object"}
        ),
        df,
    )
    assert f.observed == {
        "observed_value": "object",
        "dtype": "object",
        "value_types": {"int": 2, "str": 2},
        "not_of_type": 2,
        "not_of_type_values": {"x": 1, "late": 1},
    }
    assert f.sample_values == ["x", "late"] and f.sample_rows == [{"dep_delay": "x"}, {"dep_delay": "late"}]
    assert f.finding.startswith("2 of 4 value(s) are not int (the column was read as object)")


@pytest.mark.parametrize(
    "res, error",
    [
        ({"unexpected_count": None}, None),  # GX gave no count: it could not compare
        ({"unexpected_count": 0}, "'<' not supported between instances of 'str' and 'int'"),  # GX raised
    ],
    ids=["no-count", "gx-error"],
)
def test_a_range_gx_could_not_compare_is_judged_value_by_value(res, error):
    df = pd.DataFrame({"distance": pd.Series([50, "abc", 150, -1, 20], dtype=object)})
    f = _failure(
        result(
            "expect_column_values_to_be_between", {"column": "distance", "min_value": 0, "max_value": 100}, res, error
        ),
        df,
    )
    counts = {k: v for k, v in res.items() if v is not None}
    assert f.observed == counts | {
        "non_numeric": 1,
        "non_numeric_values": {"abc": 1},
        "out_of_range": 2,
        "min": -1.0,
        "max": 150.0,
    }
    assert f.sample_values == ["abc", 150, -1] and f.error == error
    assert f.finding == '1 value(s) are not numbers: "abc" x1; 2 outside [0, 100]: "150" x1, "-1" x1'


def test_a_range_with_gx_s_observed_value_keeps_it_beside_the_findings():
    df = pd.DataFrame({"distance": pd.Series([50, 150], dtype=object)})
    f = _failure(
        result(
            "expect_column_values_to_be_between",
            {"column": "distance", "min_value": 0, "max_value": 100},
            {"observed_value": 150},
            error="cannot compare",
        ),
        df,
    )
    assert f.observed == {"observed_value": 150, "non_numeric": 0, "out_of_range": 1, "min": 50.0, "max": 150.0}
    assert f.sample_rows == [{"distance": 150}]


def test_a_rule_over_several_columns_is_not_judged_as_one_column():
    df = pd.DataFrame({"a": ["x", 1], "b": [2, 3]})
    f = _failure(
        result(
            "expect_column_values_to_be_between", {"column_list": ["a", "b"], "min_value": 0}, {"observed_value": 1}
        ),
        df,
    )
    assert f.column == "a,b" and f.observed == 1 and f.finding is None and f.sample_rows == []


def test_a_range_gx_compared_keeps_gx_s_own_count_and_rows():
    df = pd.DataFrame({"distance": pd.Series([50, 150, "abc"], dtype=object)})
    f = _failure(
        result(
            "expect_column_values_to_be_between",
            {"column": "distance", "min_value": 0, "max_value": 100},
            {"unexpected_count": 1, "partial_unexpected_list": [150], "partial_unexpected_index_list": [1]},
        ),
        df,
    )
    assert f.observed == {"unexpected_count": 1} and f.finding is None
    assert f.sample_values == [150] and f.sample_rows == [{"distance": 150}]


def test_a_type_rule_with_gx_s_counts_adds_the_value_types_to_them():
    df = pd.DataFrame({"dep_delay": pd.Series([1, "x"], dtype=object)})
    f = _failure(
        result(
            "expect_column_values_to_be_in_type_list",
            {"column": "dep_delay", "type_list": ["int"]},
            {"element_count": 2},
        ),
        df,
    )
    assert f.observed == {
        "element_count": 2,
        "dtype": "object",
        "value_types": {"int": 1, "str": 1},
        "not_of_type": 1,
        "not_of_type_values": {"x": 1},
    }
