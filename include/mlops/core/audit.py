"""The audit trail: one append-only, hash-chained record per decision about a model version.

Every decision about a version (``EVENTS``: registered, gate passed or failed, canary started, stage changed,
approval asked and answered, promoted, rolled back, an alias changed by hand or found changed outside the platform)
is one record: what or who decided (``actor``: a DAG run and its triggering user, a person, the platform), when
(``at``, UTC), why, and the evidence's numbers and links (run, report, rollout). ``append`` writes one, ``verify``
checks the whole trail, ``history`` reads it; ``python -m include.mlops.core.audit verify`` is the check for people
and CI (exit 1 on a problem).

Where. In the lake, in the model's folder (``layout.audit_trail()``), one file per record, ``<seq:08d>.json``, seq
from 1. A record is written with ``Lake.create``: exclusive (a second writer of the same seq fails instead of
overwriting) and whole or absent (never half visible); no record is ever rewritten or removed by the platform.

The chain. Each record holds ``prev``, the hash of the record before it (``""`` for the first), and ``hash``, the
sha256 (hex) of the canonical JSON of all its other fields (keys sorted, separators ``,`` ``:``, UTF-8, values made
JSON-safe first). Editing a record breaks its own hash; recomputing that hash breaks the next record's ``prev``.

The head. (seq, hash) of the last record is kept outside the lake, in the MLflow registry, as the registered
model's tag ``mlops.audit_head`` = ``<seq>:<hash>`` (``registry.audit_head``/``set_audit_head``). So someone who can
write the lake but not the registry cannot delete the last records (the head points past the trail's end) nor
recompute a whole chain after an edit (the head's hash no longer matches its record).

Append. Read the head; check that the record it names is there with that hash; create record head+1 with
``prev`` = the head's hash; then move the head to it. Two writers racing: the loser's create fails; it re-reads
and tries again (``MAX_TRIES`` in all), so both records land, one after the other. A writer that stopped after
writing its record and before moving the head (a crash, a lost connection to the registry) leaves a record one
beyond the head that chains to it: the next append adopts it (moves the head) and goes on; ``verify`` reports it
as an unacknowledged tail, a warning. A record beyond the head that does not chain to it is refused
(``AuditError``). When that adopted record holds the same decision as the one being appended (same event,
version, actor, why, evidence, links; ``at`` aside) it is the same writer's earlier try, and it is returned
instead of writing the decision twice.

Fail closed. The registry or the lake unreachable, a head that does not match the trail: ``append`` raises and the
caller's task fails (and retries); no record is ever written without the head having been read. The head is moved
only forward (read, then set when higher); two writers moving it at the very same moment can leave it one record
behind, which reads as an unacknowledged tail until the next append adopts it.

What is detected (``verify``): a record edited (its hash); a record removed, added or replaced in the middle
(seqs not contiguous, ``prev`` not the hash of the record before); the last records deleted (the head points past
the end); a record edited and every later hash and ``prev`` recomputed (the head's hash differs from its record);
the head deleted from the registry while records exist (more than one record with no head).

What is not:
  * someone who can write both the lake and the registry can rewrite history consistently and move the head to
    match; so can whoever replaces the registry's database. The head makes a rewrite need both.
  * records appended at the end, by someone with write access to the lake, that chain correctly look exactly like
    a crashed writer's record: ``verify`` warns about them, and the next append adopts them. (A hash keyed with a
    secret the lake's writers lack, an HMAC, would close this; the trail holds no secret.)
  * who decided is what the caller says (``actor``), and ``at`` is the writer's clock: records are chained, not
    signed.
  * the registry keeps no history of the tag: the head says where the trail ends, not where it ended before.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
from typing import Any

from . import layout, registry
from .jsonsafe import json_safe

EVENTS = (
    "registered",  # a version was registered (training's last step)
    "gate_passed",  # the evaluation gate passed a version
    "gate_failed",  # ... or failed it
    "canary_started",  # a rollout of a version began
    "stage_changed",  # the rollout moved to another stage (traffic share)
    "approval_asked",  # a person was asked to approve a step
    "approval_answered",  # and answered (the person is the actor; the answer is in why and evidence)
    "promoted",  # the version became the champion
    "rolled_back",  # the version was taken out of traffic
    "alias_changed",  # an alias changed by hand, through the platform
    "alias_changed_outside",  # an alias found changed outside the platform
)
ACTOR_KINDS = ("dag_run", "person", "platform")  # dag_run: dag_id and run_id (and user); person: user
MAX_TRIES = 20  # creates that lost a race (or adopted a crashed writer's record) before giving up
_RECORD = re.compile(r"^([0-9]{8})\.json$")
_DECISION = ("model", "event", "version", "actor", "why", "evidence", "links")  # what a retry writes again


class AuditError(RuntimeError):
    """The trail cannot be extended as it is: it does not match its head outside the lake, or a writer kept losing
    the race. ``python -m include.mlops.core.audit verify`` says what is wrong."""


# records --------------------------------------------------------------------------------------------------------
def record_name(seq: int) -> str:
    """The file of record ``seq`` in the trail's folder (``00000001.json``: names sort in seq order)."""
    if not isinstance(seq, int) or not 1 <= seq <= 99_999_999:
        raise ValueError(f"an audit record's seq is from 1 to 99999999, not {seq!r}")
    return f"{seq:08d}.json"


def canonical(obj: Any) -> bytes:
    """The bytes a record's hash is taken over: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def digest(record: dict[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of every field of ``record`` but ``hash``."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _read(lake, seq: int) -> dict[str, Any] | None:
    """Record ``seq``, or None when there is none (any other failure propagates)."""
    try:
        data = lake.read_bytes(layout.audit_trail(), record_name(seq))
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise AuditError(f"{_uri(lake, seq)} is not a JSON record ({exc}): run verify") from exc


def _chains(record: Any, seq: int, prev: str) -> bool:
    """Whether ``record`` is a sound record ``seq`` following a record whose hash is ``prev``."""
    return (
        isinstance(record, dict)
        and record.get("seq") == seq
        and record.get("prev") == prev
        and record.get("hash") == digest(record)
    )


def _uri(lake, seq: int) -> str:
    return lake.uri(layout.audit_trail(), record_name(seq))


def _utc(at: str | dt.datetime | None) -> str:
    if at is None:
        return dt.datetime.now(dt.UTC).isoformat()
    t = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(str(at).strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"an audit record's time needs its time zone: {at!r}")
    return t.astimezone(dt.UTC).isoformat()


def _actor(actor: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(actor, dict):
        raise TypeError(f"an actor is a dict with a 'kind' ({', '.join(ACTOR_KINDS)}), not {actor!r}")
    kind = actor.get("kind")
    if kind not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {kind!r}; kinds: {ACTOR_KINDS}")
    need = {"dag_run": ("dag_id", "run_id"), "person": ("user",)}.get(kind, ())
    missing = [k for k in need if not actor.get(k)]
    if missing:
        raise ValueError(f"a {kind} actor names its {' and '.join(missing)}: {actor!r}")
    return json_safe(actor)


# the head, outside the lake -------------------------------------------------------------------------------------
def _head() -> tuple[int, str]:
    """(seq, hash) of the last acknowledged record; (0, "") when the trail has none. Registry errors propagate."""
    return registry.audit_head() or (0, "")


def _advance(seq: int, hash_: str) -> None:
    """Move the head to record ``seq``, never backwards (another writer may already be further on)."""
    current = registry.audit_head()
    if current is None or current[0] < seq:
        registry.set_audit_head(seq, hash_)


# append, verify, history ----------------------------------------------------------------------------------------
def append(
    lake,
    event: str,
    version: str | None,
    actor: dict[str, Any],
    why: str,
    evidence: dict[str, Any] | None = None,
    links: dict[str, Any] | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    """Record one decision about ``version`` (None: about no version in particular) at the end of the trail and
    return the record as written (or as found: see the module's doc on retries).

    ``event``: one of ``EVENTS``. ``actor``: ``{"kind": "dag_run", "dag_id", "run_id", "user"}``, ``{"kind":
    "person", "user"}`` or ``{"kind": "platform", ...}``, kept as given. ``why``: the reason in words.
    ``evidence``: the numbers decided on; ``links``: where the evidence is (run, report, rollout URLs). ``at``: the
    decision's time (ISO, with its zone), now by default. Raises ``AuditError`` when the trail does not match its
    head, and whatever the registry or the lake raise: nothing is written then."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; events: {EVENTS}")
    if not isinstance(why, str) or not why.strip():
        raise ValueError("an audit record says why (a non-empty text)")
    for name, value in (("evidence", evidence), ("links", links)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name} is a dict, not {type(value).__name__}")
    body = {
        "at": _utc(at),
        "model": registry.model_name(),
        "event": event,
        "version": None if version is None else str(version),
        "actor": _actor(actor),
        "why": why,
        "evidence": json_safe(evidence or {}),
        "links": json_safe(links or {}),
    }
    folder = layout.audit_trail()
    for _ in range(MAX_TRIES):
        seq, prev = _head()
        if seq:
            last = _read(lake, seq)
            if last is None:
                raise AuditError(
                    f"the registry's head says the trail ends at record {seq}, but {_uri(lake, seq)} is missing "
                    "(records deleted?): run verify"
                )
            if last.get("hash") != prev or digest(last) != prev:
                raise AuditError(
                    f"{_uri(lake, seq)} is not the record the registry's head names (hash {prev[:12]}...): the trail "
                    "was changed: run verify"
                )
        record = {**body, "seq": seq + 1, "prev": prev}
        record["hash"] = digest(record)
        try:
            lake.create(_encode(record), folder, record_name(seq + 1))
        except FileExistsError:
            pass
        else:
            _advance(seq + 1, record["hash"])
            return record
        # record seq + 1 is there already: another writer's, which won the race or stopped before moving the head
        other = _read(lake, seq + 1)
        if other is None:  # a conflicting write that did not complete (S3 409): try again
            continue
        if not _chains(other, seq + 1, prev):
            raise AuditError(
                f"{_uri(lake, seq + 1)} exists but does not follow the registry's head (record {seq}): the trail was "
                "changed: run verify"
            )
        if seq == 0 and _read(lake, 2) is not None and registry.audit_head() is None:
            raise AuditError(
                f"the trail holds records ({_uri(lake, 1)}, {_uri(lake, 2)}, ...) but the registry holds no head "
                f"(tag {registry.AUDIT_HEAD_TAG} of {body['model']}): it was deleted, or the registry replaced: "
                "run verify"
            )
        _advance(seq + 1, other["hash"])  # adopt it
        if {k: other.get(k) for k in _DECISION} == {k: body[k] for k in _DECISION}:
            return other  # this very decision, written by an earlier try of the same writer
    raise AuditError(f"gave up appending to {lake.uri(folder)} after {MAX_TRIES} tries: too many writers at once")


def _listing(lake) -> tuple[dict[int, str], list[str]]:
    """The trail's records by seq, and the names in its folder that are no record."""
    records, strays = {}, []
    for name in lake.ls(layout.audit_trail()):
        m = _RECORD.match(name)
        if m and int(m.group(1)) >= 1:
            records[int(m.group(1))] = name
        else:
            strays.append(name)
    return records, strays


def verify(lake) -> dict[str, Any]:
    """Check the whole trail against itself and against its head in the registry.

    Returns ``{"ok", "records", "head", "trail", "model", "problems", "warnings"}``: ``ok`` is False when there is a
    problem (a message per finding, naming the record's file); warnings (a tail of records beyond the head that
    chain correctly: a writer stopped before moving the head; a file that is no record) leave it True. An empty
    trail with no head is ok. A registry or a lake that cannot be read raises: no answer is made up."""
    folder = layout.audit_trail()
    problems: list[str] = []
    bad_tag = False
    try:
        head = registry.audit_head()
    except ValueError as exc:  # a tag that is no head: said, and nothing is compared with it
        head, bad_tag = None, True
        problems.append(str(exc))
    records, strays = _listing(lake)
    warnings = [f"{lake.uri(folder, name)}: not a record of the trail (ignored)" for name in strays]
    sound: dict[int, dict[str, Any]] = {}  # records readable as JSON objects, by seq
    expected, prev = 1, ""
    for seq in sorted(records):
        uri = _uri(lake, seq)
        if seq != expected:
            first, last = _uri(lake, expected), _uri(lake, seq - 1)
            gap = first if seq - 1 == expected else f"{first} to {last}"
            problems.append(f"{gap}: missing (removed from the middle of the trail); the trail goes on at {uri}")
            prev = None  # the chain cannot be followed across the gap
        expected = seq + 1
        try:
            record = json.loads(lake.read_bytes(folder, records[seq]))
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            computed = digest(record)  # ValueError on values JSON has no form for (NaN)
        except ValueError as exc:
            problems.append(f"{uri}: not a JSON record ({exc})")
            prev = None
            continue
        sound[seq] = record
        if record.get("seq") != seq:
            problems.append(f"{uri}: says it is record {record.get('seq')!r}, its name says {seq}")
        if record.get("hash") != computed:
            problems.append(f"{uri}: its hash does not match its content (edited after it was written)")
        if prev is not None and record.get("prev") != prev:
            before = _uri(lake, seq - 1) if seq > 1 else "nothing (the first record)"
            problems.append(
                f"{uri}: its prev is not the hash of {before} (a record before it was changed, removed or replaced)"
            )
        prev = record.get("hash")
    last = max(records) if records else 0
    if bad_tag:
        pass
    elif head is None:
        if len(records) == 1 and last == 1:
            warnings.append(
                f"{_uri(lake, 1)}: not acknowledged by a head in the registry (a writer stopped between writing it "
                "and setting the head; the next append adopts it)"
            )
        elif records:
            problems.append(
                f"the registry holds no head (tag {registry.AUDIT_HEAD_TAG} of {registry.model_name()}) for a trail "
                f"of {len(records)} records: the head was deleted, or the registry replaced"
            )
    else:
        seq, hash_ = head
        if not records:
            problems.append(
                f"the registry's head says record {seq} ({hash_[:12]}...) but {lake.uri(folder)} holds no records: "
                "the trail was deleted"
            )
        elif seq > last:
            missing = _uri(lake, last + 1) if seq == last + 1 else f"{_uri(lake, last + 1)} to {_uri(lake, seq)}"
            problems.append(
                f"{missing}: deleted: the registry's head says the trail ends at record {seq}, it ends at "
                f"{_uri(lake, last)}"
            )
        elif seq not in sound:
            problems.append(f"{_uri(lake, seq)}: the head's record is missing or unreadable")
        elif sound[seq].get("hash") != hash_:
            problems.append(
                f"{_uri(lake, seq)}: not the record the registry's head names (hash {hash_[:12]}..., this one "
                f"{str(sound[seq].get('hash'))[:12]}...): the trail was rewritten and its hashes recomputed"
            )
        if records and seq < last:
            tail = [s for s in sorted(records) if s > seq]
            where = _uri(lake, tail[0]) if len(tail) == 1 else f"{_uri(lake, tail[0])} to {_uri(lake, tail[-1])}"
            warnings.append(
                f"{where}: beyond the registry's head (record {seq}), not acknowledged: a writer stopped between "
                "writing and setting the head (the next append adopts them), or they were added to the lake"
            )
    return {
        "ok": not problems,
        "records": len(records),
        "head": None if head is None else {"seq": head[0], "hash": head[1]},
        "trail": lake.uri(folder),
        "model": registry.model_name(),
        "problems": problems,
        "warnings": warnings,
    }


def history(lake, version: str | None = None) -> list[dict[str, Any]]:
    """The trail's records, oldest first: all of them, or those about one ``version``. Reads only (``verify``
    checks)."""
    records, _ = _listing(lake)
    out = []
    for seq in sorted(records):
        record = json.loads(lake.read_bytes(layout.audit_trail(), records[seq]))
        if version is None or (record.get("version") is not None and str(record.get("version")) == str(version)):
            out.append(record)
    return out


# the registry against the trail --------------------------------------------------------------------------------
CHAMPION_EVENTS = ("promoted", "alias_changed", "alias_changed_outside")


def champion_by_trail(records: list[dict[str, Any]]) -> tuple[bool, str | None]:
    """(whether the trail says who the champion is, and who): the version of its last promotion, or the ``to`` of
    its last champion alias change (by hand through the platform, or found changed outside it)."""
    known, champion = False, None
    for r in records:
        ev = r.get("evidence") or {}
        if r.get("event") == "promoted":
            known, champion = True, r.get("version")
        elif r.get("event") in ("alias_changed", "alias_changed_outside") and ev.get("alias") == "champion":
            known, champion = True, None if ev.get("to") is None else str(ev.get("to"))
    return known, champion


def check_champion(lake, actor: dict[str, Any]) -> dict[str, Any] | None:
    """Compare the registry's champion with the one the trail's decisions made; when they differ (an alias set or
    removed in MLflow by hand, outside the platform, or a trail that begins after the champion was chosen), record
    it (``alias_changed_outside``, by ``actor``) and return the record; None when they agree. The registry or the
    lake unreadable raises (never read as "no champion")."""
    now = registry.alias_version("champion")
    now = None if now is None else str(now["version"])
    known, expected = champion_by_trail(history(lake))
    if known and expected == now:
        return None
    if not known and now is None:
        return None
    why = (
        f"the registry's champion is {'v' + now if now else 'unset'}, but the trail's last decision made it "
        f"{'v' + expected if expected else 'unset'}: changed outside the platform"
        if known
        else f"the trail begins with champion v{now} already in the registry (chosen before the trail was kept)"
    )
    return append(
        lake, "alias_changed_outside", now or expected, actor, why, {"alias": "champion", "from": expected, "to": now}
    )


# the command ----------------------------------------------------------------------------------------------------
def _summary(result: dict[str, Any]) -> str:
    head = result["head"]
    where = "none" if head is None else f"record {head['seq']} ({head['hash'][:12]}...)"
    lines = [
        f"audit trail {result['trail']} (model {result['model']}): {result['records']} records; "
        f"head in the registry: {where}"
    ]
    lines += [f"  PROBLEM  {p}" for p in result["problems"]]
    lines += [f"  warning  {w}" for w in result["warnings"]]
    lines.append("OK" if result["ok"] else f"FAILED: {len(result['problems'])} problem(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m include.mlops.core.audit verify [--json]`` (exit 0: sound, 1: a problem, 2: could not check) and
    ``history [--version V]`` (the records as JSON lines)."""
    parser = argparse.ArgumentParser(
        prog="python -m include.mlops.core.audit", description="The model's audit trail (MLOPS_LAKE_URL, MLflow)."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    check = sub.add_parser("verify", help="check the trail's hash chain and its head in the registry")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    hist = sub.add_parser("history", help="print the records, oldest first, one JSON object a line")
    hist.add_argument("--version", help="only the records about this version")
    args = parser.parse_args(argv)
    from .lake import lake_from_settings

    try:
        lake = lake_from_settings()
        if args.cmd == "history":
            for record in history(lake, args.version):
                print(json.dumps(record, sort_keys=True, ensure_ascii=False))
            return 0
        result = verify(lake)
    except Exception as exc:  # the registry or the lake unreachable: no verdict
        print(f"error: could not read the audit trail or its head: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else _summary(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
