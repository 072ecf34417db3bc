"""What a prediction request is, derived from the data sets' declaration (``core.schema.request_fields``), and its
path to the model without pandas.

``RequestModel`` builds two msgspec types from the declared columns: ``Flight`` (one flight; the name is the
model's, from ``api.rows``: ``Pizza`` for ``pizzas``) and ``Batch``
(``{"flights": [...]}``). Decoding is strict: declared types only (no ``"1000"`` for a number, no ``true`` for a
flight number, no float for an integer), declared ranges and patterns, no unknown field, no NaN or Infinity (JSON
has no such literal and a number too large for a float is refused); then the flight's date must be a real date
that agrees with its event time. A batch longer than the cap is refused before its flights are validated.
Errors name the field (``loc``) and never echo the input.

``Encoder`` turns decoded flights straight into the model's float32 matrix with its ``FeatureSpec``: numeric
columns as float32 (None -> NaN), the derived event-time columns from the event time, categories as the codes of
the spec's vocabulary (-1 = unseen): the same numbers ``FeatureSpec.encode`` gives through pandas.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np

from ..core import schema
from ..core.config import Settings
from ..core.frame import FeatureSpec
from ..core.schema import model as declared_model

PY_TYPES = {"int": int, "float": float, "string": str, "timestamp": str, "bool": bool, "date": str}
# a flight's local date is the calendar day of its event time (UTC) in some time zone, UTC-12 to UTC+14
EARLIEST, LATEST = dt.timedelta(hours=-14), dt.timedelta(hours=24 + 12)
_AT = re.compile(r"^(.*?)(?: - at `(\$[^`]*)`)?$", re.S)
_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
MAX_MESSAGE = 300


class RequestError(ValueError):
    """A refused request: ``status`` and a small JSON-able ``detail`` (field and message, never the input)."""

    def __init__(self, status: int, loc: list[Any], msg: str, kind: str):
        super().__init__(msg)
        self.status, self.loc, self.msg, self.kind = status, loc, msg, kind

    @property
    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": self.loc, "msg": self.msg[:MAX_MESSAGE], "type": self.kind}]


def too_deep() -> RequestError:
    return RequestError(422, ["body"], "JSON nested too deeply", "json_invalid")


def _loc(path: str | None, root: str) -> list[Any]:
    out: list[Any] = [root]
    for name, index in _PART.findall(path or ""):
        out.append(name if name else int(index))
    return out


def _pattern(col: schema.Column) -> str | None:
    """The pattern a text field must match: the declared one, or a date column's format."""
    if col.type == "date":
        return col.pattern or col.date_regex
    return col.pattern if col.type in ("string", "timestamp") else None


def _field_type(col: schema.Column, pattern: bool = True) -> Any:
    """The msgspec type of a declared column: its type, range and (``pattern``) its pattern."""
    meta = {}
    if col.min is not None and col.type in ("int", "float"):
        meta["ge"] = int(col.min) if col.type == "int" else float(col.min)
    if col.max is not None and col.type in ("int", "float"):
        meta["le"] = int(col.max) if col.type == "int" else float(col.max)
    if _pattern(col) and pattern:
        meta["pattern"] = _pattern(col)
    if col.type == "int":  # JSON Schema's integer admits 1545.0; the decoder does not
        meta["description"] = "an integer written without a fraction or exponent (1545, not 1545.0)"
    t = PY_TYPES[col.type]
    if col.type == "timestamp" and not col.pattern:
        t = dt.datetime
    return Annotated[t, msgspec.Meta(**meta)] if meta else t


@dataclass(frozen=True)
class Decoded:
    """Flights decoded and checked: the structs, each one's key and the parsed event time (UTC)."""

    flights: list[Any]
    keys: list[str]
    times: list[dt.datetime]

    def subset(self, idx: list[int]) -> Decoded:
        return Decoded([self.flights[i] for i in idx], [self.keys[i] for i in idx], [self.times[i] for i in idx])


class RequestModel:
    def __init__(self, settings: Settings | None = None, max_batch: int = 10_000):
        m = declared_model(settings=settings)
        spec = schema.dataset(m.dataset, settings)
        self.fields = schema.request_fields(settings, m)
        self.names = [f.column.name for f in self.fields]
        self.max_batch = max_batch
        # the names the declaration gives a batch's list and each answer's key and score
        self.rows, self.key_field, self.score = m.rows, m.key_field, m.score
        self.row_name, self.row_type = m.row_name, m.row_type  # "flight", "Flight": one entry of the list
        date_cols, rest = schema.key_columns(spec, m.key)
        self.date_cols, self.key_rest = date_cols, rest
        self.date_column = spec.date_column  # the one column naming the date (None: year, month, day)
        self.event_time = spec.event_time
        self.event_column = spec.columns[spec.event_time] if spec.event_time else None
        # the documented types carry the declared patterns; the decoding types check them afterwards, once per
        # distinct value of a request (a batch has few carriers, airports and hours: msgspec would run the regular
        # expression on every flight)
        self.Flight, self.Batch = self._types("", patterns=True)
        self._Flight, self._Batch = self._types("Decoded", patterns=False)
        self.patterns = [(f.column.name, re.compile(_pattern(f.column))) for f in self.fields if _pattern(f.column)]
        self._one = msgspec.json.Decoder(self._Flight)
        self._many = msgspec.json.Decoder(self._Batch)
        self._count = msgspec.json.Decoder(msgspec.defstruct("Count", [(self.rows, list[msgspec.Raw])]))
        # the smallest body that holds more valid flights than the cap: below it, no count is needed first
        self._count_above = 64 * max_batch
        # what the prediction log keeps of a request: every field except key columns that are not features
        features = set(schema.features(settings, m).columns)
        self.logged = [n for n in self.names if n not in m.key or n in features]

    def _types(self, prefix: str, patterns: bool):
        def typed(col):
            return _field_type(col, pattern=patterns)

        required = [(f.column.name, typed(f.column)) for f in self.fields if f.required]
        optional = [(f.column.name, typed(f.column) | None, None) for f in self.fields if not f.required]
        # scalars only, so never in a reference cycle: untracked by the garbage collector (gc=False)
        flight = msgspec.defstruct(
            prefix + self.row_type, required + optional, forbid_unknown_fields=True, kw_only=True, gc=False
        )
        batch = msgspec.defstruct(
            prefix + "Batch",
            [(self.rows, Annotated[list[flight], msgspec.Meta(min_length=1)])],
            forbid_unknown_fields=True,
        )
        return flight, batch

    # decoding ----------------------------------------------------------------------------------------------------
    def _decode(self, decoder, body: bytes, batch: bool):
        """The typed decode of a body; every way it can fail as the 422 that names it."""
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise self._refused(exc, "body", batch=batch) from None
        except msgspec.DecodeError as exc:
            raise RequestError(422, ["body"], f"malformed JSON: {exc}", "json_invalid") from None
        except RecursionError:
            raise too_deep() from None

    def decode_one(self, body: bytes) -> Decoded:
        return self._checked([self._decode(self._one, body, batch=False)], ["body"])

    def decode_batch(self, body: bytes) -> Decoded:
        if len(body) > self._count_above:
            try:
                n = len(getattr(self._count.decode(body), self.rows))
            except (msgspec.ValidationError, msgspec.DecodeError):
                n = 0  # the typed decode below says what is wrong
            except RecursionError:
                raise too_deep() from None
            if n > self.max_batch:
                raise RequestError(
                    422,
                    ["body", self.rows],
                    f"a batch holds at most {self.max_batch} {self.rows}, got {n}: split it",
                    "too_long",
                )
        batch = self._decode(self._many, body, batch=True)
        rows = getattr(batch, self.rows)
        if len(rows) > self.max_batch:
            raise RequestError(
                422,
                ["body", self.rows],
                f"a batch holds at most {self.max_batch} {self.rows}, got {len(rows)}: split it",
                "too_long",
            )
        return self._checked(rows, ["body", self.rows])

    def _refused(self, exc: Exception, root: str, batch: bool) -> RequestError:
        text = str(exc)
        m = _AT.match(text)
        msg, path = (m.group(1), m.group(2)) if m else (text, None)
        if not batch and f"unknown field `{self.rows}`" in msg:
            msg += ": a batch goes to POST /predict/batch"
        elif batch and path in (None, "$") and "unknown field" in msg:
            msg += f': a batch is {{"{self.rows}": [...]}}; one goes to POST /predict'
        return RequestError(422, _loc(path, root), msg, "validation")

    def _checked(self, flights: list[Any], loc: list[Any]) -> Decoded:
        """The declared patterns; each flight's date is a real date and its event time falls on that calendar day
        in some time zone. Each distinct value is checked once per request."""
        many = len(loc) > 1
        for name, pattern in self.patterns:
            seen: set = set()
            for i, f in enumerate(flights):
                v = getattr(f, name)
                if v is None or v in seen:
                    continue
                if pattern.search(v) is None:
                    raise RequestError(
                        422,
                        (loc + [i] if many else loc) + [name],
                        f"Expected `str` matching regex {pattern.pattern!r}",
                        "pattern",
                    )
                seen.add(v)
        keys, times = [], []
        days: dict = {}
        rest = self.key_rest
        read = [*self.date_cols, *([self.event_time] if self.event_time else [])]
        for i, f in enumerate(flights):
            raw = tuple(getattr(f, c) for c in read)
            cached = days.get(raw)
            if cached is None:
                cached = days[raw] = self._date_and_time(f, loc + [i] if many else loc)
            day, when = cached
            keys.append("/".join([day, *[str(getattr(f, c)) for c in rest]]))
            times.append(when)
        return Decoded(flights, keys, times)

    def _time(self, col: schema.Column, value: Any, at: list[Any]) -> dt.datetime:
        """A timestamp or date field's value as a UTC time (a date: its midnight)."""
        if col.type == "date":
            try:
                return dt.datetime.strptime(value, col.date_format).replace(tzinfo=dt.UTC)
            except ValueError as exc:
                raise RequestError(
                    422, at + [col.name], f"not a real date ({col.date_format}): {exc}", "date"
                ) from None
        when = value
        if isinstance(when, str):
            try:
                when = dt.datetime.fromisoformat(when)
            except ValueError as exc:
                raise RequestError(422, at + [col.name], f"not a real time: {exc}", "timestamp") from None
        if when.tzinfo is None:
            raise RequestError(422, at + [col.name], "a time zone is required (UTC: ...Z)", "timestamp")
        return when.astimezone(dt.UTC)

    def _date_and_time(self, f: Any, at: list[Any]) -> tuple[str, dt.datetime]:
        if self.date_column is None:
            y, m, d = self.date_cols
            try:
                day = dt.date(getattr(f, y), getattr(f, m), getattr(f, d))
            except ValueError as exc:
                raise RequestError(422, at + [d], f"{y}/{m}/{d} name no real date: {exc}", "date") from None
        else:
            day = self._time(self.date_column, getattr(f, self.date_column.name), at).date()
        if self.event_column is None:
            return day.isoformat(), dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        when = self._time(self.event_column, getattr(f, self.event_time), at)
        offset = when.replace(tzinfo=None) - dt.datetime(day.year, day.month, day.day)
        if not EARLIEST <= offset < LATEST:
            raise RequestError(
                422,
                at + [self.event_time],
                f"{self.event_time} {when:%Y-%m-%dT%H:%MZ} is not on {day} in any time zone",
                "date_mismatch",
            )
        return day.isoformat(), when

    def schema(self) -> dict[str, Any]:
        """JSON schemas of the two bodies (``one``, ``many``) and their components, for the OpenAPI document."""
        (one, many), components = msgspec.json.schema_components(
            [self.Flight, self.Batch], ref_template="#/components/schemas/{name}"
        )
        date = "/".join(self.date_cols)
        when = (
            f", and {self.event_time} a real time on that calendar day in some time zone (UTC-12 to UTC+14)"
            if self.event_column is not None and self.event_time not in self.date_cols
            else ""
        )
        components[self.row_type]["description"] = (
            f"One entry of `{self.rows}`. Beyond the fields' types, ranges and patterns: {date} must name a real date"
            f"{when}; otherwise 422."
        )
        components["Batch"]["description"] = f"At least one {self.row_name}, at most {self.max_batch} (otherwise 422)."
        return {"one": one, "many": many, "components": components}


class Encoder:
    """A model's ``FeatureSpec`` applied to decoded flights, straight into a float32 matrix."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.columns = spec.columns
        self.vocab = {c: {v: i for i, v in enumerate(spec.categories.get(c, []))} for c in spec.categorical}
        self._plain = [c for c in spec.numeric if c not in schema.DERIVED]

    def encode(self, decoded: Decoded) -> np.ndarray:
        flights, n = decoded.flights, len(decoded.flights)
        if n == 1:
            return self._one(flights[0], decoded.times[0])
        X = np.empty((n, len(self.columns)), dtype=np.float32)
        if not n:
            return X
        sent = [c for c in self._plain if hasattr(flights[0], c)]
        if sent:  # all numeric request columns at once: a tuple per flight (None -> NaN)
            values = np.array(list(map(operator.attrgetter(*sent), flights)), dtype=np.float64).reshape(n, len(sent))
            if np.isinf(values).any():  # the declared ranges keep these out; a column without one would not
                col = sent[int(np.nonzero(np.isinf(values).any(axis=0))[0][0])]
                raise RequestError(422, ["body", col], "Infinity is not a value", "finite")
        for j, c in enumerate(self.spec.numeric):
            if c == schema.EVENT_HOUR:
                X[:, j] = [t.hour for t in decoded.times]
            elif c == schema.EVENT_WEEKDAY:
                X[:, j] = [t.weekday() for t in decoded.times]
            elif c in sent:
                X[:, j] = values[:, sent.index(c)]
            else:
                X[:, j] = np.nan
        k = len(self.spec.numeric)
        for j, c in enumerate(self.spec.categorical):
            vocab = self.vocab[c]
            if hasattr(flights[0], c):
                X[:, k + j] = [vocab.get(str(getattr(f, c)), -1) for f in flights]
            else:
                X[:, k + j] = -1
        return X

    def _one(self, f: Any, when: dt.datetime) -> np.ndarray:
        """One flight: the row built in Python, one array (numpy's per-column overhead dominates for one row)."""
        row: list[Any] = []
        for c in self.spec.numeric:
            if c == schema.EVENT_HOUR:
                row.append(when.hour)
            elif c == schema.EVENT_WEEKDAY:
                row.append(when.weekday())
            else:
                row.append(getattr(f, c, None))
        for c in self.spec.categorical:
            v = getattr(f, c, None)
            row.append(-1 if v is None else self.vocab[c].get(str(v), -1))
        X = np.array([row], dtype=np.float64)
        if np.isinf(X).any():
            col = self.columns[int(np.nonzero(np.isinf(X[0]))[0][0])]
            raise RequestError(422, ["body", col], "Infinity is not a value", "finite")
        return X.astype(np.float32)
