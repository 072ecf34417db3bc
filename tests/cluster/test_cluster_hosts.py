"""The test hosts (``scripts/cluster/cluster.py``, ``make cluster-up`` / ``cluster-down``): network namespaces on a
bridge, each host reaching the cluster's own servers over the network (Redis, the PostgreSQL relay, SeaweedFS's S3
API, the MLflow tracking server) and resolving this machine's hostname to its own address; ``down`` removes every
namespace, bridge, hosts file, database and process it made, also after an ``up`` that failed half way, and sweeps
what carries the prefix when the state file is gone. Each test uses a prefix and subnet of its own."""

from __future__ import annotations

import secrets
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
from cluster_hosts import cluster, needs_root

pytestmark = [needs_root, pytest.mark.timeout(600)]


@pytest.fixture
def hosts(tmp_path):
    """A cluster object of a prefix and subnet of its own; whatever the test leaves is removed."""
    c = cluster.Cluster(tmp_path / "cluster", "t" + secrets.token_hex(3), f"10.79.{secrets.randbelow(200) + 20}")
    yield c
    c.down()


def _left(c) -> dict[str, list[str]]:
    """What of the cluster's is still on the machine."""
    namespaces = [ns for ns in cluster._namespaces() if ns.startswith(c.prefix + "-")]
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SELECT datname FROM pg_database"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    procs = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(c.home) in a or c.gateway in a or c.addr("control") in a for a in (p.info["cmdline"] or []))
    ]
    return {
        "namespaces": namespaces,
        "bridge": [c.bridge] if cluster._link_exists(c.bridge) else [],
        "hosts files": [str(p) for p in Path("/etc/netns").glob(c.prefix + "-*")],
        "databases": [d for d in out if d.startswith(c.prefix + "_")],
        "processes": procs,
    }


NOTHING = {"namespaces": [], "bridge": [], "hosts files": [], "databases": [], "processes": []}


def test_each_host_reaches_the_servers_over_the_network_and_down_removes_everything(hosts):
    env = hosts.up(airflow=False)
    assert (hosts.env_file.stat().st_mode & 0o777) == 0o600 and env["MLOPS_LAKE_URL"] == "s3://lake"
    for host in cluster.HOSTS:
        found = hosts.probe(host)
        assert found["ok"], (host, found)
        assert found["answered"] == {"redis": True, "postgres": True, "s3": True, "mlflow": True}
        assert found["hostname_address"] == hosts.addr(host)  # what Horovod's Gloo resolves: the host itself
    # the hosts are apart: worker1's address is not this machine's, and only the bridge joins them
    r = subprocess.run(
        ["ip", "netns", "exec", hosts.ns("worker1"), "getent", "hosts", "worker2", "control", socket.gethostname()],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == [hosts.addr("worker2"), "worker2", hosts.addr("control"), "control"] + [
        hosts.addr("worker1"),
        socket.gethostname(),
        "worker1",
    ], r.stdout
    # the object store honours a conditional put (If-None-Match: *), as the audit trail's exclusive create needs
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["MLOPS_CLUSTER_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    s3.put_object(Bucket="lake", Key="once.json", Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket="lake", Key="once.json", Body=b"2", IfNoneMatch="*")
    assert s3.get_object(Bucket="lake", Key="once.json")["Body"].read() == b"1"
    with pytest.raises(cluster.ClusterError, match="a cluster is up already"):
        hosts.up()
    assert hosts.status()["processes"] == dict.fromkeys(["postgres-relay", "redis", "seaweedfs", "mlflow"], "running")

    removed = hosts.down()
    assert {"bridge " + hosts.bridge, "namespace " + hosts.ns("serve"), "database " + hosts.prefix + "_mlflow"} <= set(
        removed
    ), removed
    assert _left(hosts) == NOTHING
    assert not hosts.state_file.exists() and not hosts.env_file.exists()
    assert hosts.down() == []  # again: nothing to remove, no error


def test_an_up_that_fails_half_way_removes_what_it_made(hosts, monkeypatch):
    def refuse(self, state):
        raise cluster.ClusterError("planted: the object store refused its buckets")

    monkeypatch.setattr(cluster.Cluster, "_buckets", refuse)
    with pytest.raises(cluster.ClusterError, match="planted"):
        hosts.up()
    assert _left(hosts) == NOTHING and not hosts.state_file.exists()


def test_down_without_its_state_file_sweeps_what_carries_the_prefix(hosts):
    subprocess.run(["ip", "netns", "add", hosts.ns("worker1")], check=True)
    subprocess.run(["ip", "link", "add", hosts.bridge, "type", "bridge"], check=True)
    Path("/etc/netns", hosts.ns("worker1")).mkdir(parents=True)
    Path("/etc/netns", hosts.ns("worker1"), "hosts").write_text("127.0.0.1 localhost\n")
    assert not hosts.state_file.exists()
    removed = hosts.down()
    assert set(removed) == {
        f"namespace {hosts.ns('worker1')}",
        f"bridge {hosts.bridge}",
        f"hosts file /etc/netns/{hosts.ns('worker1')}/hosts",
    }
    assert _left(hosts) == NOTHING


@pytest.mark.parametrize(("prefix", "net"), [("Bad", "10.1.2"), ("waytoolongprefix", "10.1.2"), ("ok", "8.8.8")])
def test_names_that_would_not_make_valid_links_or_a_private_net_are_refused(tmp_path, prefix, net):
    with pytest.raises(cluster.ClusterError):
        cluster.Cluster(tmp_path, prefix, net)
