"""Launching a Horovod job with a hard timeout, and naming the rank that failed or hung.

``run_job(job)`` starts ``python -m include.mlops.train.launch <job.json>`` in its own session; that
process calls ``horovod.runner.run`` (Gloo) with ``job.workers`` processes on this host, or on ``job.hosts``.
When the job exits non-zero or outlives ``job.timeout_s``, every process it started is killed (so their
ports are freed) and ``TrainingJobError`` says which rank failed, or which ranks never got past which phase.
A model exists only if rank 0 finished: it comes back with rank 0's result and ``model.txt`` is renamed into place
whole. Across hosts (``host:slots,...``) Horovod starts the other hosts' ranks over SSH; each rank's progress
reaches the job log (``distributed.STATUS_MARK`` lines) from whatever host it runs on, so no shared disk is assumed.
``MLOPS_HOROVOD_NICS`` (comma-separated interface names, e.g. ``eth0``) names the network the ranks use across
hosts; without it Horovod tests every host's interfaces first (over SSH, a few seconds).

Secrets: Horovod's launcher writes every environment variable it has onto each worker's command line
(``env K=V ... python -m horovod.runner.run_task``), visible to anyone on the host in ``ps``. So the launcher
and the ranks get an allow-listed environment (``rank_environment``): paths, locale, thread settings,
Horovod's own and the non-secret AWS settings; never the task's connections, keys or database URL. The lake's
credentials reach the ranks inside the job's arguments (pickled to them by Horovod over loopback), never on a
command line or on disk.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.config import PROJECT_ROOT
from . import params
from .distributed import MODEL_KEY, PHASES, STATUS_MARK, Job

log = logging.getLogger(__name__)
SECRET_ENV = "MLOPS_LAKE_STORAGE_OPTIONS"
# what a rank may see of the task's environment; MLOPS_HOROVOD_ENV adds names (comma-separated)
RANK_ENV = frozenset(
    {
        "PATH",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "LD_LIBRARY_PATH",
        "OMP_NUM_THREADS",
        "PYTHONUNBUFFERED",
        "PYTHONHASHSEED",
        "MLOPS_HOROVOD_CYCLE_TIME",
        "MLOPS_HOROVOD_ENV",
        "MLOPS_HOROVOD_NICS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
    }
)
RANK_ENV_PREFIXES = ("LC_", "HOROVOD_", "NCCL_", "GLOO_")


def rank_environment(env: dict[str, str]) -> dict[str, str]:
    """The allow-listed part of ``env`` that the launcher and the ranks get (see the module's docstring)."""
    extra = {n.strip() for n in env.get("MLOPS_HOROVOD_ENV", "").split(",") if n.strip()}
    return {
        k: v
        for k, v in env.items()
        if k in RANK_ENV or k in extra or (k.startswith(RANK_ENV_PREFIXES) and "SECRET" not in k)
    }


class TrainingJobError(RuntimeError):
    """A job that failed: ``ranks`` (each rank's last status); ``transient`` when no rank recorded an error of its
    own (a timeout, a rank gone without a word, a host unreachable): the same job may succeed once the host or its
    link is back, so a task retries it; a rank's own error (bad data, a bug) or a host name that does not resolve (a
    wrong host list) would fail again."""

    def __init__(self, message: str, ranks: dict[int, dict[str, Any]] | None = None, transient: bool = False):
        super().__init__(message)
        self.ranks = ranks or {}
        self.transient = transient


@dataclass
class JobResult:
    model_path: Path
    ranks: list[dict[str, Any]]
    wall_s: float  # the whole job, launch included
    launch_s: float  # from start to the slowest rank's Horovod initialisation
    log_path: Path


def _rank_states(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Each rank's last status line in the job log (``out_dir/job.log``), by rank."""
    states: dict[int, dict[str, Any]] = {}
    log_path = out_dir / "job.log"
    if not log_path.exists():
        return states
    with open(log_path, errors="replace") as fh:
        for line in fh:
            at = line.find(STATUS_MARK)
            if at < 0:
                continue
            try:
                s = json.loads(line[at + len(STATUS_MARK) :])
                states[int(s["rank"])] = s
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a killed rank
    return states


def _where(rank: int, host: str | None) -> str:
    return f"rank {rank}" + (f" (host {host})" if host else "")


def planned_hosts(hosts: str | None, workers: int) -> list[str]:
    """The host each rank is given (Horovod fills the hosts' slots in the order listed); ``workers`` 0: every slot."""
    if not hosts:
        return ["localhost"] * workers
    order = [h for item in hosts.split(",") for h in [item.split(":")[0]] * int(item.split(":")[1])]
    return order[:workers] if workers else order


def unreachable_hosts(hosts: str | None, port: int = 22, timeout_s: float = 3.0) -> dict[str, tuple[str, bool]]:
    """The job's other hosts that cannot be reached: ``{host: (why, lost)}``, ``lost`` when the name resolves but its
    SSH port (Horovod reaches the hosts over SSH) does not answer (a host down, a link cut: it may come back), not
    when the name does not resolve (a wrong host list: it will not). This host's own names are not asked."""
    import psutil

    local = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET}
    found: dict[str, tuple[str, bool]] = {}
    for host in dict.fromkeys(planned_hosts(hosts, 0) if hosts else []):
        try:
            address = socket.gethostbyname(host)
        except OSError as exc:
            found[host] = (f"does not resolve: {exc}", False)
            continue
        if address in local or address.startswith("127."):
            continue
        try:
            with socket.create_connection((address, port), timeout=timeout_s):
                pass
        except OSError as exc:
            found[host] = (f"unreachable: {type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True)
    return found


def diagnose(out_dir: Path, workers: int, timed_out: bool, timeout_s: float, hosts: str | None = None) -> str:
    """A message naming the failed rank(s), or the rank(s) that never got past a phase, each with its host."""
    states = _rank_states(out_dir)
    planned = planned_hosts(hosts, workers)

    def where(r: int) -> str:  # the host the rank reported, else the one it was given
        return _where(r, (states.get(r) or {}).get("host") or (planned[r] if r < len(planned) else None))

    failed = {r: s for r, s in states.items() if s.get("error")}
    if failed:
        parts = [f"{where(r)} failed in phase '{s.get('phase')}': {s['error']}" for r, s in sorted(failed.items())]
        return "; ".join(parts)
    missing = [r for r in range(workers) if r not in states]
    if timed_out:
        order = {p: i for i, p in enumerate(PHASES)}
        furthest = max((order.get(s.get("phase"), -1) for s in states.values()), default=-1)
        behind = {r: s.get("phase") for r, s in states.items() if order.get(s.get("phase"), -1) < furthest}
        names = [f"{where(r)} stuck in phase '{ph}'" for r, ph in sorted(behind.items())]
        names += [f"{where(r)} never started" for r in missing]
        what = (
            "; ".join(names)
            if names
            else ("all ranks stuck in phase '" + str(PHASES[furthest] if furthest >= 0 else "start") + "'")
        )
        return f"timed out after {timeout_s:.0f} s: {what}"
    if missing:
        return ", ".join(where(r) for r in missing) + " never started"
    unfinished = [
        f"{where(r)} last heard in phase '{st.get('phase')}'"
        for r, st in sorted(states.items())
        if st.get("phase") != "done"
    ]
    return "the job exited with an error but no rank recorded one" + (
        f" ({'; '.join(unfinished)})" if unfinished else " (see the job log)"
    )


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    procs = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def run_job(job: Job, env: dict[str, str] | None = None) -> JobResult:
    params.check_hosts(job.hosts)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / "model.txt", out / "model.txt.partial", out / "result.json"]:
        stale.unlink(missing_ok=True)
    # credentials never touch the disk: job.json is written without them, they travel in the environment
    (out / "job.json").write_text(replace(job, storage_options={}).to_json())
    log_path = out / "job.log"
    child_env = rank_environment(dict(os.environ if env is None else env))
    child_env[SECRET_ENV] = json.dumps(job.storage_options)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), child_env.get("PYTHONPATH", "")) if p)
    t0 = time.time()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.mlops.train.launch", str(out / "job.json")],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
        timed_out = False
        try:
            rc = proc.wait(timeout=job.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out, rc = True, None
        finally:
            if proc.poll() is None or _descendants(proc.pid):
                _kill_tree(proc)
    wall = time.time() - t0
    if timed_out or rc != 0 or not (out / "model.txt").exists():
        why = diagnose(out, job.workers, timed_out, job.timeout_s, job.hosts)
        gone = unreachable_hosts(job.hosts)
        if gone:
            ranks = planned_hosts(job.hosts, job.workers)
            unreachable = [
                f"host {h} (rank {', '.join(str(r) for r, x in enumerate(ranks) if x == h)}) {why}"
                for h, (why, _) in gone.items()
            ]
            why = "; ".join([*unreachable, why])  # the likely cause first
        tail = log_path.read_text(errors="replace")[-1500:]
        (out / "model.txt.partial").unlink(missing_ok=True)
        states = _rank_states(out)
        raise TrainingJobError(
            f"Horovod job with {job.workers} worker(s) failed: {why}\n--- job log tail ---\n{tail}",
            states,
            transient=any(lost for _, lost in gone.values())
            or (not gone and not any(s.get("error") for s in states.values())),
        )
    result = json.loads((out / "result.json").read_text())
    states = _rank_states(out)
    inits = [s["phases"].get("initialized", t0) for s in states.values()]
    return JobResult(
        model_path=out / "model.txt",
        ranks=result,
        wall_s=wall,
        launch_s=(max(inits) - t0) if inits else float("nan"),
        log_path=log_path,
    )


def _load_fn(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def main(job_file: str) -> int:
    job = Job.from_json(Path(job_file).read_text())
    job.storage_options = json.loads(os.environ.pop(SECRET_ENV, "{}") or "{}")  # not inherited by the ranks' env
    params.check_hosts(job.hosts)
    keep = rank_environment(dict(os.environ))  # Horovod puts all of os.environ on the workers' command lines
    os.environ.clear()
    os.environ.update(keep)
    from horovod.runner import run as hvd_run

    fn = _load_fn(job.fn)
    hosts = job.hosts or f"localhost:{job.workers}"
    os.environ.setdefault("OMP_NUM_THREADS", str(job.threads_per_worker))  # the workers inherit this env
    nics = [n.strip() for n in os.environ.get("MLOPS_HOROVOD_NICS", "").split(",") if n.strip()]
    results = hvd_run(
        fn,
        args=(json.loads(job.to_json()),),
        np=job.workers,
        hosts=hosts,
        use_gloo=True,
        start_timeout=max(30, int(job.timeout_s)),
        network_interfaces=nics or None,
    )
    models = [r.pop(MODEL_KEY) for r in results if isinstance(r, dict) and MODEL_KEY in r]
    out = Path(job.out_dir)
    (out / "result.json").write_text(json.dumps(results, default=str))
    if models:  # rank 0's; whole or not at all
        (out / "model.txt.partial").write_bytes(models[0])
        (out / "model.txt.partial").replace(out / "model.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
