"""Batch validation with Great Expectations 1.x, suites kept as JSON in ``expectations/``.

The GX API is called directly (ephemeral context, pandas data source, a ``ValidationDefinition`` per suite);
importing GX is slow (seconds), so it happens on first use, never at import of this module.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import numbers
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.jsonsafe import json_safe
from ..core.schema import batch_parameters

log = logging.getLogger(__name__)

SAMPLE_ROWS = 5
# GX's SUMMARY format: counts, the first unexpected values and their row indexes, the counts of those values
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
TYPE_RULES = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type")
TABLE_RULES = ("expect_table_columns_to_match_set", "expect_table_row_count_to_be_between")


class BatchRejected(Exception):
    """A batch failed validation; it has been (or must be) quarantined. Retrying cannot help."""

    def __init__(self, report: ValidationReport, quarantine_uri: str | None = None):
        self.report = report
        self.quarantine_uri = quarantine_uri
        super().__init__(report.summary(quarantine_uri))


@dataclass
class Failure:
    rule: str
    column: str | None
    observed: Any
    expected: dict[str, Any]
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample_values: list[Any] = field(default_factory=list)
    sample_rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    finding: str | None = None  # what the offending values are, when GX's own counts do not say it

    def describe(self) -> str:
        where = f"({self.column})" if self.column else ""
        if self.finding:
            what = self.finding  # GX's own error, if any, stays in the report's "error"
        elif self.error:
            what = f"could not be evaluated: {self.error}"
        elif self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.1f} %)" if self.unexpected_percent is not None else ""
            eg = f", e.g. {self.sample_values[:3]}" if self.sample_values else ""
            what = f"{self.unexpected_count} unexpected value(s){pct}{eg}"
        else:
            what = f"observed {_short(self.observed)}"
        return f"{self.rule}{where}: {what}"


@dataclass
class ValidationReport:
    dataset: str
    date: str
    suite: str
    success: bool
    rows: int
    columns: list[str]
    evaluated: int
    failures: list[Failure]
    source: str | None = None
    validated_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def failed_rules(self) -> list[str]:
        return [f.rule + (f"({f.column})" if f.column else "") for f in self.failures]

    def summary(self, quarantine_uri: str | None = None) -> str:
        head = (
            f"Batch {self.dataset}/{self.date} rejected by suite '{self.suite}': "
            f"{len(self.failures)} of {self.evaluated} rule(s) failed"
        )
        lines = [head] + [f"  - {f.describe()}" for f in self.failures]
        if quarantine_uri:
            lines.append(f"  quarantined at {quarantine_uri}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self) | {"failed_rules": self.failed_rules})


def read_csv(data: bytes, dataset: str, date: str, options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Parse a drop; an unreadable file becomes a ``BatchRejected`` naming the batch and the parser error."""
    if not data.strip():
        failure = Failure(
            rule="non_empty_file",
            column=None,
            observed=f"{len(data)} byte(s)",
            expected={"min_rows": 1, "header": True},
        )
        raise BatchRejected(ValidationReport(dataset, date, "non_empty_file", False, 0, [], 1, [failure]))
    try:
        return pd.read_csv(io.BytesIO(data), **(options or {}))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        failure = Failure(
            rule="readable_csv",
            column=None,
            observed=str(exc).splitlines()[0][:300],
            expected={"format": "CSV with a header row"},
        )
        raise BatchRejected(ValidationReport(dataset, date, "readable_csv", False, 0, [], 1, [failure])) from exc


# --- Great Expectations ---------------------------------------------------------------------------------------

_lock = threading.Lock()
_context = None
_definitions: dict[tuple[str, str], Any] = {}


def _gx_context():
    global _context
    if _context is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx

        ctx = gx.get_context(mode="ephemeral")
        try:
            ctx.variables.progress_bars = {"globally": False}
        except Exception:  # pragma: no cover - cosmetic
            pass
        _context = ctx
    return _context


def load_suite(suite: str, expectations_dir: Path) -> dict[str, Any]:
    """The suite file: the rules no declared column states (row counts, shares); it may list none."""
    path = Path(expectations_dir) / f"{suite}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"expectation suite {path} not found") from exc
    if not isinstance(raw.get("expectations", []), list):
        raise ValueError(f"expectation suite {path}: 'expectations' must be a list")
    return raw


def suite_expectations(spec, expectations_dir: Path) -> list[dict[str, Any]]:
    """Every rule a data set is validated with: those its declaration implies (``core.schema.expectations``)
    and those of its suite file."""
    from ..core.schema import expectations

    return expectations(spec) + list(load_suite(spec.suite, expectations_dir).get("expectations", []))


def _definition(spec, expectations_dir: Path):
    path = Path(expectations_dir) / f"{spec.suite}.json"
    rules = suite_expectations(spec, expectations_dir)
    cache_key = (str(path), json.dumps(rules, sort_keys=True, default=str))
    with _lock:
        if cache_key in _definitions:
            return _definitions[cache_key]
        import great_expectations as gx

        ctx = _gx_context()
        raw = load_suite(spec.suite, expectations_dir)
        uid = f"{spec.suite}-{len(_definitions)}"
        gx_suite = ctx.suites.add(gx.ExpectationSuite(name=uid, expectations=rules, meta=raw.get("meta")))
        asset = ctx.data_sources.add_pandas(f"src-{uid}").add_dataframe_asset(f"batch-{uid}")
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"vd-{uid}", data=batch_def, suite=gx_suite))
        _definitions[cache_key] = vd
        return vd


def validate(
    df: pd.DataFrame,
    spec,
    date: dt.date | str,
    expectations_dir: Path,
    source: str | None = None,
) -> ValidationReport:
    """Run the data set's rules (``suite_expectations``) on ``df``; the batch's date is passed to them as
    ``batch_year/month/day`` and the one date column's text (``core.schema.batch_parameters``)."""
    d = dt.date.fromisoformat(str(date)[:10])
    dataset, suite = spec.name, spec.suite
    vd = _definition(spec, expectations_dir)
    # GX 1.24 does not recognise pandas 3's "str" dtype in type checks; it does judge object columns by the
    # Python type of their values, so string columns are handed over as object dtype.
    strings = [c for c in df.columns if pd.api.types.is_string_dtype(df[c].dtype) and df[c].dtype != object]
    if strings:
        df = df.astype({c: object for c in strings})
    params = batch_parameters(spec, d)
    with _lock:  # GX contexts are not thread-safe
        result = vd.run(batch_parameters={"dataframe": df}, expectation_parameters=params, result_format=RESULT_FORMAT)
    failures = [_failure(r.to_json_dict(), df) for r in result.results if not r.success]
    failures.sort(key=lambda f: (f.rule not in TABLE_RULES, f.rule, f.column or ""))
    return ValidationReport(
        dataset=dataset,
        date=d.isoformat(),
        suite=suite,
        success=not failures,
        rows=int(len(df)),
        columns=[str(c) for c in df.columns],
        evaluated=len(result.results),
        failures=failures,
        source=source,
    )


def _failure(r: dict[str, Any], df: pd.DataFrame) -> Failure:
    """One failed rule as the report shows it: its observed value (GX's ``observed_value``, else GX's counts of
    the unexpected values) and samples drawn from the rows that broke it, never from rows that did not."""
    cfg = r.get("expectation_config") or {}
    rule = cfg.get("type", "unknown")
    kwargs = dict(cfg.get("kwargs") or {})
    column = kwargs.pop("column", None)
    if column is None and "column_list" in kwargs:
        column = ",".join(kwargs["column_list"])
    kwargs.pop("batch_id", None)
    res = r.get("result") or {}
    error = None
    info = r.get("exception_info") or {}
    if info.get("raised_exception"):
        error = str(info.get("exception_message"))
    else:
        for v in info.values():
            if isinstance(v, dict) and v.get("raised_exception"):
                error = str(v.get("exception_message"))
                break
    observed = res.get("observed_value")
    if observed is None:
        observed = {
            k: res[k]
            for k in ("element_count", "unexpected_count", "unexpected_percent", "missing_count")
            if res.get(k) is not None
        }
        if res.get("partial_unexpected_counts"):
            observed["unexpected_value_counts"] = res["partial_unexpected_counts"][:10]
    values = list(res.get("partial_unexpected_list") or [])[:SAMPLE_ROWS]
    rows = _rows(df, res.get("partial_unexpected_index_list") or [])
    if not rows and values and column in df.columns:  # GX named the values but not their rows
        rows = _rows(df, df.index[df[column].isin(values)])
    finding = None
    single = column if isinstance(column, str) and column in df.columns else None
    offenders = None
    if "column" in (cfg.get("kwargs") or {}) and column not in df.columns:
        observed, finding = {"column_present": False}, f"the drop has no column {column!r}"
    elif rule == "expect_table_columns_to_match_set" and kwargs.get("column_set") is not None:
        expected_set, seen = set(kwargs["column_set"]), [str(c) for c in df.columns]
        missing = sorted(expected_set - set(seen))
        extra = [c for c in seen if c not in expected_set]
        observed = {"columns": seen, "missing": missing, "unexpected": extra}
        finding = (
            "; ".join(
                p
                for p in (
                    f"missing column(s) {missing}" if missing else "",
                    f"unexpected column(s) {extra}" if extra else "",
                )
                if p
            )
            or None
        )
    elif single and rule in TYPE_RULES:
        offenders, finding, extra = _type_offenders(df[single], kwargs.get("type_list") or [kwargs.get("type_")])
        observed = (observed if isinstance(observed, dict) else {"observed_value": observed}) | extra
    elif single and rule == "expect_column_values_to_be_between" and (error or res.get("unexpected_count") is None):
        offenders, finding, extra = _range_offenders(df[single], kwargs.get("min_value"), kwargs.get("max_value"))
        observed = (observed if isinstance(observed, dict) else {"observed_value": observed}) | extra
    if offenders is not None and len(offenders):
        values = [df.at[i, single] for i in offenders[:SAMPLE_ROWS]]
        rows = _rows(df, offenders)
    return Failure(
        rule=rule,
        column=column,
        observed=observed if observed != {} else None,
        expected=kwargs,
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=res.get("unexpected_percent"),
        sample_values=values,
        sample_rows=rows,
        error=error,
        finding=finding,
    )


def _rows(df: pd.DataFrame, index) -> list[dict[str, Any]]:
    picked = [i for i in list(index)[:SAMPLE_ROWS] if i in df.index]
    return df.loc[picked].to_dict(orient="records") if picked else []


_KINDS = {
    "int": ("int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "integer"),
    "float": ("float", "float16", "float32", "float64", "double", "number"),
    "str": ("str", "string", "object", "stringdtype"),
    "bool": ("bool", "boolean"),
}


def _kinds(type_list: list[Any]) -> set[str]:
    names = {str(t).lower() for t in type_list if t}
    return {kind for kind, aliases in _KINDS.items() if names & set(aliases)}


def _readable(v: Any, kinds: set[str]) -> bool:
    """Whether one value can stand for one of ``kinds`` (a CSV column of numbers is read as text as soon as one
    value is not a number, so "42" counts as an int: the offender is the value that is not)."""
    if isinstance(v, (bool, np.bool_)):
        return "bool" in kinds
    if isinstance(v, numbers.Real):  # Python and numpy numbers
        f = float(v)
        return "float" in kinds or ("int" in kinds and f.is_integer())
    if isinstance(v, str):
        t = v.strip()
        if "str" in kinds:
            return True
        if "bool" in kinds and t.lower() in ("true", "false"):
            return True
        try:
            f = float(t)
        except ValueError:
            return False
        return "float" in kinds or ("int" in kinds and f.is_integer() and "." not in t)
    return False


def _type_offenders(s: pd.Series, type_list: list[Any]):
    """The values of ``s`` that are not of the expected type: their index, a sentence, an observed summary."""
    present = s[s.notna()]
    value_types = present.map(lambda v: type(v).__name__).value_counts()
    extra: dict[str, Any] = {"dtype": str(s.dtype), "value_types": {str(k): int(n) for k, n in value_types.items()}}
    kinds = _kinds(type_list)
    expected = "|".join(str(t) for t in type_list)
    if not kinds:
        return None, None, extra
    bad = present[~present.map(lambda v: _readable(v, kinds))]
    if len(bad):
        counts = bad.astype(str).value_counts()
        extra |= {
            "not_of_type": int(len(bad)),
            "not_of_type_values": {str(k): int(n) for k, n in counts.head(10).items()},
        }
        read = "text" if set(extra["value_types"]) == {"str"} else str(s.dtype)
        return (
            list(bad.index),
            (f"{len(bad)} of {len(s)} value(s) are not {expected} (the column was read as {read}): {_distinct(bad)}"),
            extra,
        )
    if kinds == {"int"} and s.isna().any() and pd.api.types.is_float_dtype(s.dtype):
        missing = s[s.isna()]
        extra |= {"missing": int(len(missing))}
        return list(missing.index), f"{len(missing)} missing value(s) make the column {s.dtype}, not {expected}", extra
    return None, None, extra


def _range_offenders(s: pd.Series, low: Any, high: Any):
    """What GX could not compare (mixed types): the values that are not numbers, and numbers out of range."""
    present = s[s.notna()]
    num = pd.to_numeric(present, errors="coerce")
    not_numbers = present[num.isna()]
    out = num[
        num.notna() & (((num < low) if low is not None else False) | ((num > high) if high is not None else False))
    ]
    extra: dict[str, Any] = {"non_numeric": int(len(not_numbers)), "out_of_range": int(len(out))}
    if len(not_numbers):
        extra["non_numeric_values"] = {
            str(k): int(n) for k, n in not_numbers.astype(str).value_counts().head(10).items()
        }
    if len(num.dropna()):
        extra |= {"min": num.min(), "max": num.max()}
    index = list(not_numbers.index) + list(out.index)
    if not index:
        return None, None, extra
    parts = [f"{len(not_numbers)} value(s) are not numbers: {_distinct(not_numbers)}"] if len(not_numbers) else []
    if len(out):
        parts.append(f"{len(out)} outside [{low}, {high}]: {_distinct(present.loc[out.index])}")
    return list(s.index[s.index.isin(index)]), "; ".join(parts), extra


def _distinct(values: pd.Series, n: int = 5) -> str:
    """The distinct offending values, most frequent first, with their counts: '"unknown" x49'."""
    counts = values.astype(str).value_counts()
    shown = ", ".join(f"{json.dumps(str(v))} x{c}" for v, c in counts.head(n).items())
    return shown + (f" and {len(counts) - n} other value(s)" if len(counts) > n else "")


def _short(v: Any, limit: int = 160) -> str:
    s = json.dumps(json_safe(v), default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."
