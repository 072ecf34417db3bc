"""Data-parallel LightGBM across Horovod worker processes (Gloo), bounded by a timeout.

The job (``Job``) names a training set in the lake (written by ``write_training_set``): train shards
``train/part-NNNNN.parquet`` (one per worker), ``validation.parquet``, ``test.parquet``, ``spec.json``.

Each rank (``train_rank``):
  1. reads only its own train shard (and the small validation set);
  2. contributes a sample of its shard; all ranks gather the same pooled sample (``allgather_object``) and
     build the same reference Dataset from it, so every rank uses identical bin boundaries;
  3. picks a free port and exchanges ``host:port`` with ``allgather_object``;
  4. trains with ``tree_learner="data"``, ``num_machines``, ``machines``, ``local_listen_port``;
  5. rank 0 writes the model to the job's output folder (``model.txt``, renamed into place only when whole).

Every phase is recorded in ``<status_dir>/rank-N.json``; when the job fails or times out, the launcher reads
them to name the rank that failed or never got further.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core import layout
from ..kinds.lightgbm import KIND

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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> Job:
        return cls(**json.loads(s))


def write_training_set(lake, folder: str, ts, shards: int) -> dict[str, Any]:
    """Stage a ``features.TrainingSet`` in the lake for the ranks: train split into ``shards`` files; the model it
    trains is of LightGBM's kind (``kinds.lightgbm``)."""
    train, val, test = ts.part("train"), ts.part("validation"), ts.part("test")
    lake.rm(folder)
    for i in range(shards):
        lake.write_parquet(train.iloc[i::shards], folder, *layout.training_shard(i))
    lake.write_parquet(val, folder, layout.TRAINING_VALIDATION)
    lake.write_parquet(test, folder, layout.TRAINING_TEST)
    meta = {
        "kind": KIND,
        "spec": ts.spec.to_dict(),
        "split": ts.split,
        "fingerprint": ts.fingerprint,
        "shards": shards,
        "rows": {"train": len(train), "validation": len(val), "test": len(test)},
    }
    lake.write_json(meta, folder, layout.TRAINING_SPEC)
    return meta


class _Status:
    def __init__(self, out_dir: str, rank: int):
        self.path = Path(out_dir) / "status" / f"rank-{rank}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.state: dict[str, Any] = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "phases": {}}

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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.path)


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


def train_rank(job_dict: dict[str, Any]) -> dict[str, Any]:
    """One Horovod rank's work (module-level so that spawned workers can import it)."""
    job = Job(**job_dict)
    rank_env = int(os.environ.get("HOROVOD_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    status = _Status(job.out_dir, rank_env)
    status.phase("started")
    try:
        return _train_rank(job, status)
    except BaseException as exc:
        status.failed(exc)
        raise


def _train_rank(job: Job, status: _Status) -> dict[str, Any]:
    import horovod.torch as hvd
    import lightgbm as lgb
    import pandas as pd

    from ..core.lake import Lake
    from . import lgbm

    rank, size = rank_context()
    status.phase("initialized", size=size)
    t0 = time.time()
    lake = Lake(job.lake_url, **job.storage_options)
    meta = lake.read_json(job.training_set, layout.TRAINING_SPEC)
    if meta["shards"] != size:
        raise ValueError(f"rank {rank}: the training set has {meta['shards']} shards for {size} workers")
    features = meta["spec"]["numeric"] + meta["spec"]["categorical"]
    categorical = meta["spec"]["categorical"]
    label = meta["spec"].get("label", "label")
    shard = lake.read_parquet(job.training_set, *layout.training_shard(rank))
    validation = lake.read_parquet(job.training_set, layout.TRAINING_VALIDATION)
    status.phase("data_loaded", rows=len(shard))
    t_fit = time.time()  # from here: bins, rendezvous, Datasets, boosting (what a single process also does)

    p = lgbm.params(job.params, threads=job.threads_per_worker)
    per_rank = max(1, lgbm.BIN_SAMPLE_ROWS // size)
    mine = shard if len(shard) <= per_rank else shard.sample(n=per_rank, random_state=p["seed"] + rank)
    pooled = pd.concat(hvd.allgather_object(mine[features + [label]]), ignore_index=True)
    ref = lgbm.reference_dataset(pooled, features, categorical, p, label)
    status.phase("bins_agreed", sample_rows=len(pooled))

    port = _free_port()
    peers = hvd.allgather_object(f"{_my_host(job)}:{port}")
    hvd.shutdown()  # no more collectives: free the background thread for LightGBM
    status.phase("rendezvous_done", machines=peers)

    # construct both Datasets now, locally, from the shared reference: left to lgb.train they would be built
    # after the network is up, with LightGBM's distributed binning of each shard instead of the shared bins
    if size > 1:
        p["pre_partition"] = True  # a Dataset parameter: it must be there before construction
    dtrain = lgbm.dataset(shard, features, categorical, p, label, reference=ref).construct()
    dval = lgbm.dataset(validation, features, categorical, p, label, reference=dtrain).construct()
    if size > 1:
        p.update(
            {
                "tree_learner": "data",
                "num_machines": size,
                "machines": ",".join(peers),
                "local_listen_port": port,
                "time_out": max(1, int(job.timeout_s // 60)),
            }
        )
    booster = lgb.train(p, dtrain, num_boost_round=job.num_boost_round, valid_sets=[dval], valid_names=["validation"])
    train_s = time.time() - t_fit
    status.phase("trained", train_s=train_s)
    result = {
        "rank": rank,
        "rows": len(shard),
        "train_s": train_s,
        "total_s": time.time() - t0,
        "machines": peers,
        "max_rss_mb": _max_rss_mb(),
    }
    if rank == 0:
        out = Path(job.out_dir)
        tmp = out / "model.txt.partial"
        tmp.write_text(booster.model_to_string())
        tmp.replace(out / "model.txt")  # whole or not at all
        result["num_trees"] = booster.num_trees()
    status.phase("done")
    return result


def _max_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited across fork + exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")
