"""The audit trail (``core/audit.py``) on a local lake and the embedded MLflow registry (the head is a tag of the
registered model): records chain and verify; an edited, deleted or recomputed record is caught, naming its file; a
writer that stopped between writing a record and moving the head leaves a warning that the next append clears;
racing writers both land; a registry that cannot be read writes nothing. And ``Lake.create``, its exclusive write."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid

import pytest

from include.mlops.core import audit, layout, registry
from include.mlops.core.lake import Lake

DAG = {"kind": "dag_run", "dag_id": "train_model", "run_id": "manual__2013-02-01T00:00:00+00:00", "user": "ana"}
PERSON = {"kind": "person", "user": "bo"}


@pytest.fixture
def lake(tmp_path, monkeypatch):
    """A fresh lake, and a registered model of its own (so a head of its own) in the test registry."""
    monkeypatch.setenv("MLOPS_MODEL_NAME", f"audit_{uuid.uuid4().hex[:10]}")
    return Lake((tmp_path / "lake").as_uri())


def names(lake) -> list[str]:
    return lake.ls(layout.audit_trail())


def record(lake, seq: int) -> dict:
    return lake.read_json(layout.audit_trail(), audit.record_name(seq))


def rewrite(lake, seq: int, rec: dict) -> None:
    """What someone with write access to the lake can do."""
    lake.write_bytes(json.dumps(rec).encode(), layout.audit_trail(), audit.record_name(seq))


def three(lake) -> list[dict]:
    return [
        audit.append(lake, "registered", "1", DAG, "trained", {"auc": 0.71}, {"run": "http://mlflow/runs/a"}),
        audit.append(lake, "gate_passed", "1", DAG, "beats the baseline", {"auc": 0.71, "min_auc": 0.6}),
        audit.append(lake, "approval_answered", "1", PERSON, "approved in the UI", {"answer": "yes"}),
    ]


def test_appended_records_chain_and_verify(lake):
    assert audit.verify(lake) == {
        "ok": True,
        "records": 0,
        "head": None,
        "trail": lake.uri(layout.audit_trail()),
        "model": registry.model_name(),
        "problems": [],
        "warnings": [],
    }
    recs = three(lake)
    assert names(lake) == ["00000001.json", "00000002.json", "00000003.json"]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert [r["prev"] for r in recs] == ["", recs[0]["hash"], recs[1]["hash"]]
    for r in recs:  # the hash: sha256 of the canonical JSON of every other field
        body = {k: v for k, v in r.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert r["hash"] == hashlib.sha256(canonical).hexdigest()
        assert record(lake, r["seq"]) == r
    first = recs[0]
    assert set(first) == {"seq", "at", "model", "event", "version", "actor", "why", "evidence", "links", "prev", "hash"}
    assert first["model"] == registry.model_name() and first["actor"] == DAG and first["at"].endswith("+00:00")
    assert registry.audit_head() == (3, recs[2]["hash"])
    result = audit.verify(lake)
    assert result["ok"] and result["records"] == 3 and result["head"] == {"seq": 3, "hash": recs[2]["hash"]}
    assert result["problems"] == [] and result["warnings"] == []
    assert audit.history(lake) == recs and audit.history(lake, "1") == recs and audit.history(lake, "2") == []


def test_a_record_keeps_what_it_is_given_json_safe(lake):
    r = audit.append(
        lake,
        "stage_changed",
        7,
        {"kind": "platform", "component": "ramp"},
        "stage 2: 25% of traffic",
        {"share": 0.25, "ece": float("nan"), "stages": (1, 2)},
        at="2013-02-01T10:00:00+01:00",
    )
    assert r["version"] == "7" and r["at"] == "2013-02-01T09:00:00+00:00"
    assert r["evidence"] == {"share": 0.25, "ece": None, "stages": [1, 2]} and r["links"] == {}
    assert audit.verify(lake)["ok"]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"event": "deployed"}, "unknown audit event"),
        ({"actor": {"kind": "robot"}}, "unknown actor kind"),
        ({"actor": {"kind": "dag_run", "dag_id": "x"}}, "run_id"),
        ({"actor": {"kind": "person"}}, "user"),
        ({"why": " "}, "says why"),
        ({"at": "2013-02-01T10:00:00"}, "time zone"),
    ],
)
def test_a_record_that_says_too_little_is_refused_and_nothing_is_written(lake, kwargs, error):
    args = {"event": "promoted", "version": "1", "actor": DAG, "why": "canary passed"} | kwargs
    with pytest.raises(ValueError, match=error):
        audit.append(lake, **args)
    assert names(lake) == [] and registry.audit_head() is None


def test_an_edited_record_is_named(lake):
    three(lake)
    rec = record(lake, 2)
    rewrite(lake, 2, rec | {"why": "no reason"})
    result = audit.verify(lake)
    assert not result["ok"]
    assert result["problems"] == [
        f"{lake.uri(layout.audit_trail(), '00000002.json')}: its hash does not match its content (edited after it "
        "was written)"
    ]


def test_an_edited_last_record_stops_the_next_append(lake):
    three(lake)
    rewrite(lake, 3, record(lake, 3) | {"why": "approved by nobody"})
    with pytest.raises(audit.AuditError, match=r"00000003\.json is not the record the registry's head names"):
        audit.append(lake, "promoted", "1", DAG, "canary passed")
    assert len(names(lake)) == 3
    assert any("00000003.json: its hash does not match" in p for p in audit.verify(lake)["problems"])


def test_a_deleted_last_record_is_caught(lake):
    three(lake)
    lake.rm(layout.audit_trail(), "00000003.json")
    result = audit.verify(lake)
    assert not result["ok"] and result["records"] == 2
    assert result["problems"] == [
        f"{lake.uri(layout.audit_trail(), '00000003.json')}: deleted: the registry's head says the trail ends at "
        f"record 3, it ends at {lake.uri(layout.audit_trail(), '00000002.json')}"
    ]
    with pytest.raises(audit.AuditError, match=r"00000003\.json is missing"):
        audit.append(lake, "promoted", "1", DAG, "canary passed")
    assert len(names(lake)) == 2


def test_a_deleted_middle_record_is_caught(lake):
    three(lake)
    lake.rm(layout.audit_trail(), "00000002.json")
    problems = audit.verify(lake)["problems"]
    assert problems == [
        f"{lake.uri(layout.audit_trail(), '00000002.json')}: missing (removed from the middle of the trail); the "
        f"trail goes on at {lake.uri(layout.audit_trail(), '00000003.json')}"
    ]


def test_a_chain_recomputed_after_an_edit_is_caught_by_the_head(lake):
    three(lake)
    prev = record(lake, 1)["hash"]
    for seq in (2, 3):  # the edit, and every later hash and prev made consistent again
        rec = record(lake, seq) | {"prev": prev}
        if seq == 2:
            rec["why"] = "fails the gate, promoted anyway"
        rec["hash"] = audit.digest(rec)
        rewrite(lake, seq, rec)
        prev = rec["hash"]
    result = audit.verify(lake)
    assert not result["ok"] and len(result["problems"]) == 1
    assert result["problems"][0].startswith(f"{lake.uri(layout.audit_trail(), '00000003.json')}: not the record")
    assert "rewritten" in result["problems"][0]


def test_a_head_without_records_and_records_without_a_head_are_errors(lake):
    registry.set_audit_head(2, "a" * 64)
    result = audit.verify(lake)
    assert not result["ok"] and "holds no records" in result["problems"][0]

    other = Lake(lake.url + "-2")
    registry._client().delete_registered_model_tag(registry.model_name(), registry.AUDIT_HEAD_TAG)
    three(other)
    registry._client().delete_registered_model_tag(registry.model_name(), registry.AUDIT_HEAD_TAG)
    result = audit.verify(other)
    assert not result["ok"] and result["problems"] == [
        f"the registry holds no head (tag mlops.audit_head of {registry.model_name()}) for a trail of 3 records: "
        "the head was deleted, or the registry replaced"
    ]
    with pytest.raises(audit.AuditError, match="the registry holds no head"):
        audit.append(other, "promoted", "1", DAG, "canary passed")
    assert len(names(other)) == 3


def test_a_crash_before_the_head_moves_warns_and_the_next_append_adopts_the_record(lake, monkeypatch):
    three(lake)
    with monkeypatch.context() as m:
        m.setattr(registry, "set_audit_head", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("registry down")))
        with pytest.raises(ConnectionError):
            audit.append(lake, "promoted", "1", DAG, "canary passed", {"stage": 3})
    assert len(names(lake)) == 4 and registry.audit_head()[0] == 3  # written, not acknowledged
    result = audit.verify(lake)
    assert result["ok"] and result["problems"] == []
    assert result["warnings"] == [
        f"{lake.uri(layout.audit_trail(), '00000004.json')}: beyond the registry's head (record 3), not acknowledged: "
        "a writer stopped between writing and setting the head (the next append adopts them), or they were added to "
        "the lake"
    ]
    r = audit.append(lake, "rolled_back", "1", PERSON, "errors after promotion")
    assert r["seq"] == 5 and r["prev"] == record(lake, 4)["hash"]
    result = audit.verify(lake)
    assert result["ok"] and result["warnings"] == [] and result["head"]["seq"] == 5


def test_a_retried_decision_after_a_crash_is_not_written_twice(lake, monkeypatch):
    three(lake)
    with monkeypatch.context() as m:
        m.setattr(registry, "set_audit_head", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("registry down")))
        with pytest.raises(ConnectionError):
            audit.append(lake, "promoted", "1", DAG, "canary passed", {"stage": 3})
    again = audit.append(lake, "promoted", "1", DAG, "canary passed", {"stage": 3})  # the task's retry
    assert again == record(lake, 4) and len(names(lake)) == 4
    assert registry.audit_head() == (4, again["hash"]) and audit.verify(lake)["warnings"] == []


def test_a_crash_on_the_first_record_warns_and_is_adopted(lake, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(registry, "set_audit_head", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("registry down")))
        with pytest.raises(ConnectionError):
            audit.append(lake, "registered", "1", DAG, "trained")
    result = audit.verify(lake)
    assert result["ok"] and result["head"] is None and "not acknowledged by a head" in result["warnings"][0]
    assert audit.append(lake, "gate_failed", "1", DAG, "AUC below the floor")["seq"] == 2
    assert audit.verify(lake) | {"trail": None, "model": None} == {
        "ok": True,
        "records": 2,
        "head": {"seq": 2, "hash": record(lake, 2)["hash"]},
        "trail": None,
        "model": None,
        "problems": [],
        "warnings": [],
    }


def test_a_record_beyond_the_head_that_does_not_chain_is_refused(lake):
    three(lake)
    forged = {"seq": 4, "prev": "0" * 64, "event": "promoted", "why": "trust me"}
    forged["hash"] = audit.digest(forged)
    lake.create(json.dumps(forged).encode(), layout.audit_trail(), "00000004.json")
    with pytest.raises(audit.AuditError, match=r"00000004\.json exists but does not follow the registry's head"):
        audit.append(lake, "promoted", "1", DAG, "canary passed")
    problems = audit.verify(lake)["problems"]
    assert problems == [
        f"{lake.uri(layout.audit_trail(), '00000004.json')}: its prev is not the hash of "
        f"{lake.uri(layout.audit_trail(), '00000003.json')} (a record before it was changed, removed or replaced)"
    ]


def test_two_appends_racing_from_the_same_head_both_land_in_order(lake, monkeypatch):
    audit.append(lake, "registered", "2", DAG, "trained")
    read_head = registry.audit_head
    barrier = threading.Barrier(2, timeout=60)
    waited = threading.local()

    def head_after_both_read(*a, **k):
        h = read_head(*a, **k)
        if not getattr(waited, "done", False):  # each thread's first read: both see record 1 as the head
            waited.done = True
            barrier.wait()
        return h

    out, errors = {}, []

    def write(why):
        try:
            out[why] = audit.append(lake, "approval_asked", "2", DAG, why)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    lost = []
    create = lake.create

    def counted_create(data, *parts):
        try:
            return create(data, *parts)
        except FileExistsError:
            lost.append(parts[-1])
            raise

    with monkeypatch.context() as m:
        m.setattr(registry, "audit_head", head_after_both_read)
        m.setattr(lake, "create", counted_create)
        threads = [threading.Thread(target=write, args=(w,)) for w in ("asked ana", "asked bo")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    assert lost == ["00000002.json"]  # both tried record 2: one won, the other went on to record 3
    assert sorted(r["seq"] for r in out.values()) == [2, 3]
    assert names(lake) == ["00000001.json", "00000002.json", "00000003.json"]
    assert {record(lake, 2)["why"], record(lake, 3)["why"]} == {"asked ana", "asked bo"}
    result = audit.verify(lake)
    assert result["ok"] and result["warnings"] == [] and result["head"]["seq"] == 3


def test_a_registry_that_cannot_be_read_writes_nothing(lake, monkeypatch):
    three(lake)

    def down(*a, **k):
        raise ConnectionError("tracking server unreachable")

    monkeypatch.setattr(registry, "audit_head", down)
    with pytest.raises(ConnectionError):
        audit.append(lake, "promoted", "1", DAG, "canary passed")
    assert len(names(lake)) == 3
    with pytest.raises(ConnectionError):
        audit.verify(lake)


def test_a_head_tag_that_is_no_head_is_refused(lake):
    registry._client().create_registered_model(registry.model_name(), tags={registry.AUDIT_HEAD_TAG: "3:abc"})
    with pytest.raises(ValueError, match="is not '<seq>:<sha256 hex>'"):
        registry.audit_head()
    with pytest.raises(ValueError):
        audit.append(lake, "promoted", "1", DAG, "canary passed")
    assert names(lake) == []
    result = audit.verify(lake)
    assert not result["ok"] and "mlops.audit_head='3:abc'" in result["problems"][0]
    with pytest.raises(ValueError, match="not an audit head"):
        registry.set_audit_head(0, "a" * 64)


def test_the_command_says_ok_or_names_the_problem(lake, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_LAKE_URL", lake.url)
    three(lake)
    assert audit.main(["verify"]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    assert audit.main(["history", "--version", "1"]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [1, 2, 3]
    lake.rm(layout.audit_trail(), "00000003.json")
    assert audit.main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "00000003.json: deleted" in out and "FAILED: 1 problem(s)" in out
    assert audit.main(["verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    monkeypatch.setattr(registry, "audit_head", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("down")))
    assert audit.main(["verify"]) == 2
    assert "could not read" in capsys.readouterr().err


# Lake.create ----------------------------------------------------------------------------------------------------
def test_create_writes_once_and_never_over_a_file(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    path = lake.create(b"first", "a", "b.json")
    assert path == str(tmp_path / "lake" / "a" / "b.json") and lake.read_bytes("a", "b.json") == b"first"
    with pytest.raises(FileExistsError, match=r"already holds .*a/b\.json") as err:
        lake.create(b"second", "a", "b.json")
    assert err.value.filename == path
    assert lake.read_bytes("a", "b.json") == b"first"
    assert os.listdir(tmp_path / "lake" / "a") == ["b.json"]  # no temporary file left behind
    lake.write_bytes(b"other", "a", "c.json")
    with pytest.raises(FileExistsError):
        lake.create(b"third", "a", "c.json")
    assert lake.read_bytes("a", "c.json") == b"other"


def test_create_racing_writers_one_wins(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    wins, losses = [], []
    barrier = threading.Barrier(8, timeout=30)

    def write(i):
        barrier.wait()
        try:
            lake.create(str(i).encode() * 1000, "race.json")
            wins.append(i)
        except FileExistsError:
            losses.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wins) == 1 and len(losses) == 7
    assert lake.read_bytes("race.json") == str(wins[0]).encode() * 1000


def test_a_record_that_is_no_json_record_is_named(lake):
    three(lake)
    lake.write_bytes(b'{"seq": 2, "why": NaN}', layout.audit_trail(), "00000002.json")
    lake.write_bytes(b"notes", layout.audit_trail(), "README")
    result = audit.verify(lake)
    assert not result["ok"]
    assert result["problems"][0].startswith(f"{lake.uri(layout.audit_trail(), '00000002.json')}: not a JSON record")
    assert result["warnings"] == [f"{lake.uri(layout.audit_trail(), 'README')}: not a record of the trail (ignored)"]


def _versions(n: int) -> None:
    """``n`` versions of the test's registered model (the source is never loaded here)."""
    import mlflow

    client = registry._client(None)  # the project's registry (the test's MLOPS_HOME)
    name = registry.model_name()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    for _ in range(n):
        client.create_model_version(name, source="file:///nowhere", run_id=None)


def test_a_champion_changed_outside_the_platform_is_recorded_once(lake):
    """The trail says v1 was promoted; someone sets the champion alias to v2 in MLflow by hand: the daily check
    records it (by the platform), once; the trail and the registry then agree, and a later promotion through the
    platform is no outside change."""
    _versions(2)
    platform = {"kind": "platform", "dag_id": "monitor_model", "run_id": "scheduled__2013-03-01"}
    registry.set_alias("champion", "1")
    audit.append(lake, "promoted", "1", DAG, "the paired comparison says promote")
    assert audit.check_champion(lake, platform) is None  # they agree
    registry.set_alias("champion", "2")  # by hand, in MLflow
    found = audit.check_champion(lake, platform)
    assert found["event"] == "alias_changed_outside" and found["version"] == "2", found
    assert found["evidence"] == {"alias": "champion", "from": "1", "to": "2"} and "outside the platform" in found["why"]
    assert audit.check_champion(lake, platform) is None  # recorded: no second record
    registry.delete_alias("champion")
    gone = audit.check_champion(lake, platform)
    assert gone["evidence"] == {"alias": "champion", "from": "2", "to": None}, gone
    assert audit.verify(lake)["ok"] and [r["event"] for r in audit.history(lake)][-2:] == ["alias_changed_outside"] * 2


def test_a_trail_that_begins_after_the_champion_was_chosen_says_so(lake):
    _versions(1)
    registry.set_alias("champion", "1")
    first = audit.check_champion(lake, {"kind": "platform"})
    assert first["event"] == "alias_changed_outside" and "trail begins with champion v1" in first["why"]
    assert audit.check_champion(lake, {"kind": "platform"}) is None
