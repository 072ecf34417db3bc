"""What the prediction service (``serve.logclient``) and its log's writer process (``serve.logwriter``) share: the
frames on the pipe between them, the writer's counters and the spill folder's file names, each defined once here.

Both directions of the pipe are 4-byte little-endian lengths followed by msgpack:

- in, a ``Frame``: ``[seq, fields, requests]``, each request a ``Logged``: ``[request_id, predicted_at, flights
  (maps), keys, scores (float64 bytes), versions, arms]``; ``fields``: the request fields the log keeps;
- out, an ``Ack``: ``{"parts": [[seq, date], ...], "seqs": [seq, ...], "c": [written, spilled_total,
  lake_failures, lost], "r": [date, ...]}``: the (frame, date) parts written, spilled or (lake and
  disk refusing) counted lost, the frames done whole, the writer's ``Counters`` so far and the flight dates the lake
  refuses now.

A spill file holds records of one flight date as JSON lines, named ``spill-<UTC time>-<random>-<flight
date>-rows<n>.jsonl`` (files spilled before the date was named have none); a process that writes one to the lake
claims it first, renaming it ``.<name>.claim-<pid>``.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import struct
import uuid
from collections.abc import Iterable
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
import numpy as np

HEADER = struct.Struct("<I")
SEQ = "_seq"  # the column of a record's frame, in the writer's tables
F = TypeVar("F")


# the frames --------------------------------------------------------------------------------------------------------
class Logged(msgspec.Struct, Generic[F], array_like=True, gc=False):
    """One request's flights and answers, as the service hands them to its log and a frame carries them:
    ``flights`` the request's decoded flights (in the writer: structs of the logged fields only), ``scores`` their
    float64 scores' bytes, ``arms`` the arm that scored each."""

    request_id: str
    predicted_at: str
    flights: list[F]
    keys: list[str]
    scores: bytes
    versions: list[str]
    arms: list[str]


class Frame(msgspec.Struct, Generic[F], array_like=True, gc=False):
    """What the service sends its writer in one round: the frame's number, the request fields the log keeps and
    the requests."""

    seq: int
    fields: list[str]
    requests: list[Logged[F]]


class Counters(NamedTuple):
    """What a writer did so far."""

    written: int = 0  # rows written to the lake
    spilled_total: int = 0  # rows ever spilled to local disk
    lake_failures: int = 0  # writes the lake refused
    lost: int = 0  # rows neither written nor spilled (the lake and the local disk both refused)

    def plus(self, other: Counters) -> Counters:
        return Counters(*map(operator.add, self, other))


class Ack(msgspec.Struct):
    """The writer's answer: ``parts`` the (frame, flight date) parts done, ``seqs`` the frames done whole."""

    parts: list[tuple[int, str | None]]
    seqs: list[int]
    counters: Counters = msgspec.field(name="c")
    refusing: list[str] = msgspec.field(default_factory=list, name="r")


_HEAD = msgspec.msgpack.Decoder(tuple[int, list[str], msgspec.Raw])  # a frame's number and fields, its requests raw
_FRAMES: dict[tuple[str, ...], msgspec.msgpack.Decoder] = {}
_ACK = msgspec.msgpack.Decoder(Ack)


def decode_frame(data: bytes) -> Frame:
    """A frame as sent, its flights decoded into structs of the logged fields only (no dict per flight)."""
    fields = tuple(_HEAD.decode(data)[1])
    decoder = _FRAMES.get(fields)
    if decoder is None:
        flight = msgspec.defstruct("LoggedFlight", [(c, Any, None) for c in fields], gc=False)
        decoder = _FRAMES[fields] = msgspec.msgpack.Decoder(Frame[flight])
    return decoder.decode(data)


def decode_ack(data: bytes) -> Ack:
    return _ACK.decode(data)


def write(out, data: bytes) -> None:
    """One message on the pipe: its length, then its bytes."""
    out.write(HEADER.pack(len(data)) + data)
    out.flush()


def send(out, message: Ack) -> None:
    write(out, msgspec.msgpack.encode(message))


def receive(inp) -> bytes | None:
    """The next message's bytes (None: the end of input, or a message cut short by it)."""
    head = inp.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    n = HEADER.unpack(head)[0]
    data = inp.read(n)
    return data if len(data) == n else None


# the records -------------------------------------------------------------------------------------------------------
def key_field() -> str:
    """The logged key's column: the model's declared key field (``flight_key``)."""
    from ..core.schema import model

    return model().key_field


def date_field() -> str:
    """The logged date's column, the partition a record goes to: the model's declared ``api.date``
    (``flight_date``)."""
    from ..core.schema import model

    return model().date_field


def columns(frame: Frame) -> dict[str, Any]:
    """A frame's records as columns (with the frame's number in ``SEQ``): the request's id, the flight's key and
    date, its score, the version and arm that scored it, when, then the logged request fields."""
    requests = frame.requests
    keys = [k for r in requests for k in r.keys]
    cols: dict[str, Any] = {
        "request_id": [r.request_id for r in requests for _ in r.keys],
        key_field(): keys,
        date_field(): [k[:10] for k in keys],
        "score": np.concatenate([np.frombuffer(r.scores, dtype=np.float64) for r in requests])
        if requests
        else np.empty(0),
        "version": [v for r in requests for v in r.versions],
        "arm": [a for r in requests for a in r.arms],
        "predicted_at": [r.predicted_at for r in requests for _ in r.keys],
    }
    flights = [f for r in requests for f in r.flights]
    for c in frame.fields:
        cols[c] = list(map(operator.attrgetter(c), flights))
    cols[SEQ] = [frame.seq] * len(keys)
    return cols


def records(frame: Frame) -> list[dict[str, Any]]:
    """A frame's records, one dict each (what a spill file holds)."""
    cols = columns(frame)
    del cols[SEQ]
    cols["score"] = cols["score"].tolist()
    names = list(cols)
    return [dict(zip(names, row)) for row in zip(*cols.values())]


# the spill folder's names ------------------------------------------------------------------------------------------
SPILL_GLOB = "spill-*.jsonl"
CLAIM_GLOB = ".spill-*.claim-*"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SPILL = re.compile(r"spill-\d{8}T\d+-[0-9a-f]{8}-(?:(\d{4}-\d{2}-\d{2})-)?rows(\d+)\.jsonl")
_CLAIM = re.compile(r"\.(spill-.+)\.claim-(\d+)")


class Spilled(NamedTuple):
    """What a spill file's name says: its flight date (None: a file of several dates, or of an older version) and
    its rows."""

    date: str | None
    rows: int


def spill_name(date: Any, rows: int) -> str:
    """A new spill file's name: now, a random part, the flight date (when it is one) and the rows."""
    tag = f"{date}-" if isinstance(date, str) and DATE.fullmatch(date) else ""
    return f"spill-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}-{tag}rows{rows}.jsonl"


def claim_name(name: str, pid: int) -> str:
    """The name of spill file ``name`` while process ``pid`` writes it to the lake."""
    return f".{name}.claim-{pid}"


def claimed(name: str) -> tuple[str, int] | None:
    """A claimed spill file's own name and the process that claimed it (None: not a claim)."""
    m = _CLAIM.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else None


def spilled_rows(names: Iterable[str]) -> int:
    """The rows of the spill files named, each file once: a file claimed or given back while the folder was listed
    (its name changed between two listings) appears under both names and counts once."""
    own: dict[str, int] = {}
    for name in names:
        claim = claimed(name)
        if (named := spilled(name)) is not None:
            own[claim[0] if claim else name] = named.rows
    return sum(own.values())


def spilled(name: str) -> Spilled | None:
    """The flight date and rows of a spill file, claimed or not, from its name (None: not a spill file's)."""
    claim = claimed(name)
    m = _SPILL.fullmatch(claim[0] if claim else name)
    return Spilled(m.group(1), int(m.group(2))) if m else None
