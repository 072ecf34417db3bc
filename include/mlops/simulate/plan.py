"""What a simulation may be asked for, checked before anything is written: the upstream simulator's fault kinds,
the data sets it replays and their days (``replayed``: the declared data sets with a ``source``), and a plan of
days (``plan``), each with the fault its drop carries.

This module is light to import (the standard library only; the declaration is read when ``replayed`` is asked):
``simulate_upstream``'s form reads the fault kinds and the replayed days from here while the DAG file is parsed,
and the drops (``upstream``), the traffic replay (``traffic``) and the days' driver (``simulator``) read them here
too.

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


@dataclass(frozen=True)
class Replayed:
    """What the simulator replays: the declared data sets with a ``source``, in their ingestion DAGs' order; the
    days all of them cover (``first`` .. ``last``, from their declared sources: a day is every data set's drop;
    None where no source declares that end); the data set a fault hits unless told (the scored one)."""

    datasets: tuple[str, ...]
    first: dt.date | None
    last: dt.date | None
    scored: str | None

    @property
    def days(self) -> str:
        if self.first is None and self.last is None:
            return "the days the source tables hold"
        return f"{self.first or '...'} .. {self.last or '...'}"


def replayed(settings: Any = None) -> Replayed:
    """The simulator's data sets and days, from the declaration (``datasets.yaml``: each data set's ``source``)."""
    from ..core import schema

    specs = schema.datasets(settings)
    names = tuple(n for group in schema.ingestion_groups(settings).values() for n in group if specs[n].source)
    firsts = [specs[n].source.first for n in names if specs[n].source.first]
    lasts = [specs[n].source.last for n in names if specs[n].source.last]
    scored = schema.model(settings=settings).dataset
    return Replayed(
        names,
        max(firsts) if firsts else None,
        min(lasts) if lasts else None,
        scored if scored in names else (names[0] if names else None),
    )


class BadParam(ValueError):
    """A simulation that cannot be run as asked: the message names the param and its value."""

    def __init__(self, param: str, value: Any, why: str):
        super().__init__(f"param {param!r} = {value!r}: {why}")
        self.param, self.value = param, value


def source_day(param: str, value: Any, source: Replayed | None = None) -> dt.date:
    """``value`` as a day the simulator has (``YYYY-MM-DD`` within ``source``'s days), else ``BadParam`` naming
    ``param``."""
    source = source or replayed()
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
    if (source.first and day < source.first) or (source.last and day > source.last):
        raise BadParam(param, value, f"outside the source data, which covers {source.days}")
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
    fault_dataset: str | None  # the data set the fault hits (None: the simulator replays none)
    replay: bool = False

    @property
    def faulty(self) -> list[Day]:
        return [d for d in self.days if d.fault]


def plan(
    start_date: Any,
    end_date: Any = None,
    fault: str | None = None,
    fault_days: Iterable[Any] | None = None,
    fault_dataset: str | None = None,
    replay: bool = False,
    source: Replayed | None = None,
) -> Plan:
    """The days ``start_date`` .. ``end_date`` (one day without an end), ``fault`` on each of ``fault_days`` of
    ``fault_dataset`` (default: the scored data set). A fault without days, days without a fault, a fault day
    outside the range, an unknown fault or data set, an end before the start, a day outside the source's days or
    a declaration with nothing to replay raise ``BadParam`` naming the param and value."""
    source = source or replayed()
    if not source.datasets:
        raise BadParam("start_date", start_date, "no declared data set has a source: nothing to replay")
    start = source_day("start_date", start_date, source)
    end = start if end_date in (None, "") else source_day("end_date", end_date, source)
    if end < start:
        raise BadParam("end_date", end_date, f"before start_date {start}")
    if fault in ("",):
        fault = None
    if fault is not None and fault not in FAULTS:
        raise BadParam("fault", fault, f"not a fault the simulator knows; one of {', '.join(FAULTS)}")
    fault_dataset = fault_dataset or source.scored
    if fault_dataset not in source.datasets:
        raise BadParam("fault_dataset", fault_dataset, f"one of the replayed data sets: {', '.join(source.datasets)}")
    if isinstance(fault_days, str):
        fault_days = [x for x in fault_days.replace(",", "\n").split() if x]
    chosen = [source_day("fault_days", x, source) for x in (fault_days or []) if x not in (None, "")]
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
