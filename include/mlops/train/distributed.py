"""A model kind trained data-parallel across Horovod worker processes (Gloo), bounded by a timeout.

The job (``Job``) names a training set in the lake (written by ``write_training_set``): train shards
``train/part-NNNNN.parquet`` (one per worker), ``validation.parquet``, ``test.parquet``, ``spec.json`` (which
names the model's kind).

Each rank (``train_rank``) initialises Horovod, then runs its kind's ``train_rank(job, rank, status)``
(``kinds.lightgbm``: its shard read alone, bins agreed on a pooled sample, the peers' ``host:port`` exchanged,
LightGBM's data-parallel learner) with a ``Rank``: its place, the collectives and the address the others reach
it at. Rank 0 returns the model its kind made with its result; Horovod carries every rank's result back to the
launcher, which writes it to the job's output folder (``model.txt``, renamed into place only when whole). No rank
writes to a disk the launcher reads: across hosts each rank has its own.

Every phase is a line ``MLOPS_RANK_STATUS {json}`` (rank, Horovod's host name, pid, phase, error) on the rank's
standard output, which Horovod forwards to the job log from every host; when the job fails or times out, the
launcher reads them there to name the rank (and its host) that failed or never got further.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import kinds
from ..core import layout

STATUS_MARK = "MLOPS_RANK_STATUS "
MODEL_KEY = "model_bytes"  # rank 0's result carries the model under this key
PHASES = ("started", "initialized", "data_loaded", "bins_agreed", "rendezvous_done", "trained", "done")


@dataclass
class Job:
    lake_url: str
    training_set: str  # folder in the lake, e.g. training/<run>/
    out_dir: str  # a local folder: model.txt and rank status files go here
    workers: int = 2
    threads_per_worker: int = 1
    num_boost_round: int = 200
    params: dict[str, Any] = field(default_factory=dict)
    hosts: str | None = None  # "h1:2,h2:2"; default all workers on this host
    timeout_s: float = 900.0
    storage_options: dict[str, Any] = field(default_factory=dict)
    fn: str = "include.mlops.train.distributed:train_rank"
    kind: str = kinds.DEFAULT_KIND  # the model kind whose train_rank each rank runs

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> Job:
        return cls(**json.loads(s))


def write_training_set(lake, folder: str, ts, shards: int, kind: str = kinds.DEFAULT_KIND) -> dict[str, Any]:
    """Stage a ``features.TrainingSet`` in the lake for the ranks: train split into ``shards`` files; the model it
    trains is of ``kind``."""
    train, val, test = ts.part("train"), ts.part("validation"), ts.part("test")
    lake.rm(folder)
    for i in range(shards):
        lake.write_parquet(train.iloc[i::shards], folder, *layout.training_shard(i))
    lake.write_parquet(val, folder, layout.TRAINING_VALIDATION)
    lake.write_parquet(test, folder, layout.TRAINING_TEST)
    meta = {
        "kind": kind,
        "spec": ts.spec.to_dict(),
        "split": ts.split,
        "fingerprint": ts.fingerprint,
        "shards": shards,
        "rows": {"train": len(train), "validation": len(val), "test": len(test)},
    }
    lake.write_json(meta, folder, layout.TRAINING_SPEC)
    return meta


class _Status:
    """A rank's progress, each change one line on its standard output (the job log, see the module's docstring)."""

    def __init__(self, rank: int):
        self.rank = rank
        host = os.environ.get("HOROVOD_HOSTNAME") or socket.gethostname()  # the name the job's host list gives
        self.state: dict[str, Any] = {"rank": rank, "pid": os.getpid(), "host": host, "phases": {}}

    def phase(self, name: str, **extra: Any) -> None:
        self.state["phase"] = name
        self.state["phases"][name] = time.time()
        self.state.update(extra)
        self._write()

    def failed(self, exc: BaseException) -> None:
        self.state["error"] = f"{type(exc).__name__}: {exc}"
        self.state["traceback"] = traceback.format_exc()[-4000:]
        self._write()

    def _write(self) -> None:
        print(STATUS_MARK + json.dumps(self.state), flush=True)


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _my_host(job: Job) -> str:
    """The address the other ranks reach this one at: loopback when every rank runs on this host."""
    hosts = [h.split(":")[0] for h in (job.hosts or "").split(",") if h.strip()]
    if len(set(hosts)) <= 1:
        return "127.0.0.1"
    return socket.gethostbyname(os.environ.get("HOROVOD_HOSTNAME") or socket.gethostname())


def rank_context() -> tuple[int, int]:
    """Initialise Horovod in this worker; returns (rank, size)."""
    # horovod.runner.run passes these as the string "(None,)" (0.28.1): set sane values before init.
    # A long cycle time keeps Horovod's background loop from stealing CPU from LightGBM.
    os.environ["HOROVOD_CYCLE_TIME"] = os.environ.get("MLOPS_HOROVOD_CYCLE_TIME", "100")
    os.environ["HOROVOD_CACHE_CAPACITY"] = "1024"
    import horovod.torch as hvd

    hvd.init()
    return hvd.rank(), hvd.size()


class Rank:
    """A rank's place in the job and what it shares with the others: ``rank``, ``size``, ``allgather`` (every
    rank's object, in rank order), ``address()`` (a free port and the ``host:port`` the others reach it at),
    ``shutdown()`` (no collectives after it: Horovod's background loop stops)."""

    def __init__(self, job: Job):
        self.job = job
        self.rank, self.size = rank_context()

    def allgather(self, obj: Any) -> list[Any]:
        import horovod.torch as hvd

        return hvd.allgather_object(obj)

    def address(self) -> tuple[str, int]:
        port = _free_port()
        return f"{_my_host(self.job)}:{port}", port

    def shutdown(self) -> None:
        import horovod.torch as hvd

        hvd.shutdown()


def train_rank(job_dict: dict[str, Any]) -> dict[str, Any]:
    """One Horovod rank's work (module-level so that spawned workers can import it): its kind's ``train_rank``."""
    job = Job(**job_dict)
    rank_env = int(os.environ.get("HOROVOD_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    status = _Status(rank_env)
    status.phase("started")
    try:
        rank = Rank(job)
        status.phase("initialized", size=rank.size)
        result, model = kinds.kind(job.kind).train_rank(job, rank, status)
        result["max_rss_mb"] = _max_rss_mb()
        result["host"] = status.state["host"]
        if model is not None:
            result[MODEL_KEY] = model  # to the launcher with the result (launch.main writes it)
        status.phase("done")
        return result
    except BaseException as exc:
        status.failed(exc)
        raise


def _max_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited across fork + exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")
