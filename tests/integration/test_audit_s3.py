"""The audit trail on an S3 lake (the moto server): ``Lake.create`` is a conditional put (``If-None-Match: *``) that
the server refuses over an existing object, and the trail appends, verifies and catches a deleted or edited record
there as it does on a local lake (``tests/unit/test_audit.py``)."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from include.mlops.core import audit, layout, registry
from include.mlops.core.lake import Lake

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DAG = {"kind": "dag_run", "dag_id": "deploy_model", "run_id": "scheduled__2013-02-01T00:00:00+00:00", "user": None}


@pytest.fixture
def s3_lake(moto_server, monkeypatch):
    """A lake in a bucket of its own on the moto server, and a registered model of its own (its head)."""
    monkeypatch.setenv("MLOPS_MODEL_NAME", f"audit_s3_{uuid.uuid4().hex[:10]}")
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", **CREDENTIALS)
    s3.create_bucket(Bucket=bucket)
    lake = Lake(
        f"s3://{bucket}/lake",
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": moto_server, "region_name": "us-east-1"},
    )
    yield lake, s3, bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
    s3.delete_bucket(Bucket=bucket)


def key(seq: int) -> str:
    return f"lake/{layout.audit_trail()}/{audit.record_name(seq)}"


def test_create_on_s3_refuses_an_existing_object(s3_lake):
    """moto honours If-None-Match: a second create is a 412, read as FileExistsError; the first bytes stay."""
    lake, s3, bucket = s3_lake
    path = lake.create(b"first", "x", "once.json")
    assert path == f"{bucket}/lake/x/once.json"
    with pytest.raises(FileExistsError, match=r"already holds s3://.*/lake/x/once\.json") as err:
        lake.create(b"second", "x", "once.json")
    assert err.value.filename == path
    assert lake.read_bytes("x", "once.json") == b"first"
    assert s3.get_object(Bucket=bucket, Key="lake/x/once.json")["Body"].read() == b"first"
    lake.write_bytes(b"plain", "x", "plain.json")  # an object written the ordinary way is refused as well
    with pytest.raises(FileExistsError):
        lake.create(b"over", "x", "plain.json")
    assert lake.read_bytes("x", "plain.json") == b"plain"


def test_the_trail_on_s3_appends_verifies_and_catches_a_deleted_record(s3_lake):
    lake, s3, bucket = s3_lake
    recs = [
        audit.append(lake, "canary_started", "4", DAG, "gate passed", {"share": 0.05}, {"rollout": "s3://x/r.json"}),
        audit.append(lake, "stage_changed", "4", DAG, "healthy for 2 hours", {"share": 0.25}),
        audit.append(lake, "promoted", "4", DAG, "every stage healthy", {"share": 1.0}),
    ]
    assert [r["seq"] for r in recs] == [1, 2, 3] and registry.audit_head() == (3, recs[2]["hash"])
    assert json.loads(s3.get_object(Bucket=bucket, Key=key(2))["Body"].read()) == recs[1]
    result = audit.verify(lake)
    assert result["ok"] and result["records"] == 3 and result["problems"] == [] and result["warnings"] == []
    assert audit.history(lake, "4") == recs

    edited = recs[1] | {"evidence": {"share": 1.0}}
    s3.put_object(Bucket=bucket, Key=key(2), Body=json.dumps(edited).encode())
    problems = audit.verify(lake)["problems"]
    assert problems == [
        f"{lake.uri(layout.audit_trail(), '00000002.json')}: its hash does not match its content "
        "(edited after it was written)"
    ]

    s3.delete_object(Bucket=bucket, Key=key(3))
    result = audit.verify(lake)
    assert not result["ok"] and any("00000003.json: deleted" in p for p in result["problems"])
    with pytest.raises(audit.AuditError, match="missing"):
        audit.append(lake, "rolled_back", "4", DAG, "errors after promotion")
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == [key(1), key(2)]


def test_a_crash_before_the_head_moves_is_adopted_on_s3(s3_lake, monkeypatch):
    lake, _, _ = s3_lake
    audit.append(lake, "registered", "5", DAG, "trained")
    with monkeypatch.context() as m:
        m.setattr(registry, "set_audit_head", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("registry down")))
        with pytest.raises(ConnectionError):
            audit.append(lake, "gate_passed", "5", DAG, "beats the champion")
    result = audit.verify(lake)
    assert result["ok"] and "00000002.json: beyond the registry's head" in result["warnings"][0]
    assert audit.append(lake, "canary_started", "5", DAG, "gate passed")["seq"] == 3
    result = audit.verify(lake)
    assert result["ok"] and result["warnings"] == [] and result["head"]["seq"] == 3
