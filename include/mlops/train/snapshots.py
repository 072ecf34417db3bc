"""Every registered version's exact training set, kept as a DVC snapshot: content-addressed, in a DVC remote.

Ingestion's idempotent reruns replace curated partitions whole, so the lake cannot say later what a version was
trained on. When ``train_model`` registers a version, its staged training set (the train shards, the validation,
test and held-out rows, ``spec.json``) is written to the DVC remote as one DVC directory object, by DVC's own data
layer (``dvc-data``): the same ``files/md5/<xx>/<rest>`` objects and ``.dir`` listing that ``dvc push`` writes, so
that plain DVC fetches it (a ``.dvc`` file naming its ``md5`` is all it needs). Its identity (``md5:<hash>.dir``)
is recorded with the version, beside the data fingerprint; ``make reproduce VERSION=n`` fetches it with DVC and
checks that fingerprint before it retrains.

The remote: the ``versions`` folder of ``DVC_REMOTE_URL`` (``s3://bucket/path``, with ``DVC_REMOTE_ENDPOINT`` for an
S3-compatible server and the credentials in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; or a folder), the
remote the pipeline's CI uses;
by default the folder ``.dvc-storage`` beside the project's files (the committed ``.dvc/config``'s, outside
``MLOPS_HOME``: ``make clean`` keeps it). A remote that refuses the write fails the registration (raised): a
version is never registered without its snapshot.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import layout
from ..core.config import PROJECT_ROOT
from ..core.lake import Lake

REMOTE_ENV, ENDPOINT_ENV = "DVC_REMOTE_URL", "DVC_REMOTE_ENDPOINT"
DEFAULT_REMOTE = PROJECT_ROOT / ".dvc-storage"
PREFIX = "md5:"
SUBFOLDER = "versions"  # the snapshots' DVC remote within the remote DVC_REMOTE_URL names


class SnapshotError(RuntimeError):
    """A snapshot cannot be written, fetched or trusted; the message names the version, the snapshot and why."""


def remote(env: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(where the snapshots are: the ``versions`` folder of the remote, its S3 endpoint or None). A folder of their
    own: no ``dvc.lock`` names them, so ``dvc gc --cloud`` over the pipeline's outputs (``<remote>/files``) would
    delete them there."""
    env = os.environ if env is None else env
    url = (env.get(REMOTE_ENV) or "").strip() or str(DEFAULT_REMOTE)
    return f"{url.rstrip('/')}/{SUBFOLDER}", (env.get(ENDPOINT_ENV) or "").strip() or None


def _odb(url: str, endpoint: str | None, lake: Lake | None = None):
    """The remote's object store as DVC lays it out (``<remote>/files/md5``). An S3 remote is reached with the
    lake's own S3 client when the lake is on S3 too (the task's ``aws_default`` connection: its credentials and
    endpoint), else with the environment's credentials and ``DVC_REMOTE_ENDPOINT``."""
    from dvc_data.hashfile.db import HashFileDB

    if url.startswith("s3://"):
        import s3fs
        from dvc_objects.fs.base import FileSystem

        if lake is not None and lake.scheme == "s3" and not endpoint:
            s3 = lake.fs
        else:
            kwargs = {"endpoint_url": endpoint} if endpoint else {}
            s3 = s3fs.S3FileSystem(client_kwargs=kwargs, skip_instance_cache=True)
        return HashFileDB(FileSystem(fs=s3), f"{url[len('s3://') :]}/files/md5", hash_name="md5")
    if "://" in url and not url.startswith("file://"):
        raise SnapshotError(f"{REMOTE_ENV}={url}: an s3://bucket/path or a folder is expected")
    from dvc_objects.fs.local import LocalFileSystem

    return HashFileDB(LocalFileSystem(), os.path.join(url.removeprefix("file://"), "files", "md5"))


def training_set_files(meta: dict[str, Any]) -> list[tuple[str, ...]]:
    """The files of a staged training set (relative to its folder): what a snapshot holds."""
    return [
        (layout.TRAINING_SPEC,),
        (layout.TRAINING_VALIDATION,),
        (layout.TRAINING_TEST,),
        (layout.TRAINING_HOLDOUT,),
        *[layout.training_shard(i) for i in range(meta["shards"])],
    ]


def push(lake: Lake, folder: str, env: Mapping[str, str] | None = None) -> str:
    """The training set staged at ``folder`` of ``lake`` to the remote, as one DVC directory; its identity."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_data.hashfile.transfer import transfer
    from dvc_objects.fs.local import LocalFileSystem

    url, endpoint = remote(env)
    meta = lake.read_json(folder, layout.TRAINING_SPEC)
    with tempfile.TemporaryDirectory(prefix="training-set-") as tmp:
        root = Path(tmp) / "training-set"
        for parts in training_set_files(meta):
            target = root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(lake.read_bytes(folder, *parts))
        local = LocalFileSystem()
        staging, _, tree = build(HashFileDB(local, str(Path(tmp) / "objects")), str(root), local, "md5")
        try:
            result = transfer(staging, _odb(url, endpoint, lake), {tree.hash_info}, shallow=False, hardlink=False)
        except Exception as exc:  # noqa: BLE001 - any refusal of the remote fails the registration
            raise SnapshotError(
                f"the training set at {lake.uri(folder)} could not be written to {url}: {type(exc).__name__}: {exc}"
            ) from exc
        if result.failed:
            raise SnapshotError(f"the DVC remote {url} refused {len(result.failed)} object(s) of {lake.uri(folder)}")
    return PREFIX + tree.hash_info.value


def dvc_file(snapshot: str, path: str = "training-set") -> str:
    """The ``.dvc`` file with which plain DVC fetches a snapshot (``dvc pull``) into ``path``."""
    if not snapshot.startswith(PREFIX) or not snapshot.endswith(".dir"):
        raise SnapshotError(f"{snapshot!r} is not a snapshot's identity (md5:<hash>.dir)")
    return f"outs:\n- md5: {snapshot[len(PREFIX) :]}\n  path: {path}\n  hash: md5\n"


def read_training_set(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training set's frame as it was built (train rows from their shards, in order, then the validation and
    test rows) and its ``spec.json``, from a snapshot fetched to ``folder``."""
    import json

    meta = json.loads((folder / layout.TRAINING_SPEC).read_text())
    shards = [pd.read_parquet(folder.joinpath(*layout.training_shard(i))) for i in range(meta["shards"])]
    n = sum(len(s) for s in shards)
    # row j of the train split went to shard j % k, at position j // k
    order = np.argsort(np.concatenate([np.arange(len(s)) * len(shards) + i for i, s in enumerate(shards)]))
    train = pd.concat(shards, ignore_index=True).iloc[order] if n else pd.concat(shards, ignore_index=True)
    parts = [train]
    parts += [pd.read_parquet(folder / f) for f in (layout.TRAINING_VALIDATION, layout.TRAINING_TEST)]
    return pd.concat(parts, ignore_index=True), meta


def fingerprint_of(folder: Path) -> str:
    """The data fingerprint of a fetched snapshot, as training computed it (``features.fingerprint``)."""
    from .. import kinds
    from .features import fingerprint

    frame, meta = read_training_set(folder)
    return fingerprint(frame, kinds.spec_of(meta["spec"]), meta["split"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
