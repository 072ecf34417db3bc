"""The test hosts (``scripts/cluster/cluster.py``, ``make cluster-up`` / ``cluster-down``) when things go wrong:
``down`` removes every namespace, bridge, hosts file, database and process an ``up`` that failed half way made, and
sweeps what carries the prefix when the state file is gone; names that would make no valid link are refused. Each
test uses a prefix and subnet of its own. (A whole cluster, its servers reached from every host and its ``down``
leaving nothing: ``test_cluster_airflow.py``, on the cluster its tests share.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cluster_hosts import NOTHING, cluster, left_behind, needs_root, new_cluster

pytestmark = [needs_root, pytest.mark.timeout(600)]


@pytest.fixture
def hosts(tmp_path):
    """A cluster object of a prefix and subnet of its own; whatever the test leaves is removed."""
    c = new_cluster(tmp_path / "cluster", "t", 74)
    yield c
    c.down()


def test_an_up_that_fails_half_way_removes_what_it_made(hosts, monkeypatch):
    def refuse(self, state):
        raise cluster.ClusterError("planted: the object store refused its buckets")

    monkeypatch.setattr(cluster.Cluster, "_buckets", refuse)
    with pytest.raises(cluster.ClusterError, match="planted"):
        hosts.up()
    assert left_behind(hosts) == NOTHING and not hosts.state_file.exists()


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
    assert left_behind(hosts) == NOTHING


@pytest.mark.parametrize(("prefix", "net"), [("Bad", "10.1.2"), ("waytoolongprefix", "10.1.2"), ("ok", "8.8.8")])
def test_names_that_would_not_make_valid_links_or_a_private_net_are_refused(tmp_path, prefix, net):
    with pytest.raises(cluster.ClusterError):
        cluster.Cluster(tmp_path, prefix, net)


def test_down_keeps_the_ssh_servers_folder_while_another_ssh_server_runs(hosts, tmp_path):
    """``up`` makes sshd's privilege separation folder (``/run/sshd``) when the machine has none and ``down`` removes
    it, but not while another SSH server runs (another cluster's: its next connection would fail without it)."""
    run = Path("/run/sshd")
    existed, others = run.exists(), cluster._sshd_running()
    fake = tmp_path / "sshd"  # a process named sshd, standing for another cluster's SSH server
    shutil.copy("/bin/sleep", fake)
    other = subprocess.Popen([str(fake), "120"])
    hosts.home.mkdir(parents=True, exist_ok=True)
    try:
        run.mkdir(exist_ok=True)
        hosts._save({"made_dirs": [str(run)]})
        hosts.down()
        assert run.is_dir() and not hosts.state_file.exists()
        other.kill()
        other.wait()
        if not others:  # no SSH server of the machine's or another test's: the folder this cluster made goes
            hosts._save({"made_dirs": [str(run)]})
            hosts.down()
            assert not run.exists()
    finally:
        other.kill()
        other.wait()
        if existed:
            run.mkdir(exist_ok=True)
        elif not others:
            shutil.rmtree(run, ignore_errors=True)
