"""``make reproduce VERSION=n``: a registered version trained again from its own training set.

The version's ``rebuild.json`` (recorded when it was registered: its snapshot, data fingerprint, kind, parameters,
rounds, workers and threads, the staged model's sha256, the code version) says what to do. The snapshot is fetched
by DVC from the remote (``dvc pull`` of a ``.dvc`` file naming it, in a scratch repository): never the current lake,
whose partitions a rerun of ingestion may have replaced since. Its data fingerprint is computed again and must be
the recorded one (a snapshot changed on the remote is refused, naming both). A code version other than the
recorded one is a warning naming both. The model is trained again by the training function ``train_model`` runs,
with the recorded parameters and worker count, in a scratch lake; the result is compared with the registered model:
the same bytes (training is deterministic: the same model text), or else both models' AUC on the snapshot's
held-out rows and their difference. Exit status 0 once rebuilt and compared, 2 on any error.

    python -m include.mlops.repro reproduce --version N --dvc .venv-dvc/bin/dvc
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import layout
from ..core.lake import Lake


class RebuildError(RuntimeError):
    """A version cannot be rebuilt; the message names the version and why."""


def fetch(snapshot: str, dest: Path, dvc: str) -> Path:
    """The snapshot, by DVC, from the configured remote, into ``dest/training-set``."""
    from ..train import snapshots

    url, endpoint = snapshots.remote()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run(*args: str) -> None:
        try:
            p = subprocess.run([dvc, *args], cwd=dest, env=env, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RebuildError(f"dvc {' '.join(args)}: {exc}") from exc
        if p.returncode != 0:
            raise RebuildError(
                f"snapshot {snapshot} could not be fetched from the DVC remote {url} (dvc {' '.join(args)} exited "
                f"{p.returncode}): {(p.stderr or p.stdout).strip()[-800:]}"
            )

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "training-set.dvc").write_text(snapshots.dvc_file(snapshot))
    run("init", "--no-scm", "-q")
    run("remote", "add", "-d", "snapshots", url)
    if endpoint:
        run("remote", "modify", "snapshots", "endpointurl", endpoint)
    run("pull", "training-set.dvc")
    return dest / "training-set"


def reproduce(version: str, dvc: str, say: Callable[[str], None] = print) -> dict[str, Any]:
    from .. import kinds
    from ..core import registry
    from ..core.metrics import metrics
    from ..train import pipeline, snapshots
    from . import stages

    rec = registry.load_artifact(version, pipeline.REBUILD)
    if rec is None:
        raise RebuildError(
            f"version {version} has no {pipeline.REBUILD}: it was registered before training kept snapshots, so its "
            "training set is not kept anywhere and it cannot be rebuilt"
        )
    say(f"version {version} ({rec['kind']}): snapshot {rec['snapshot']}, data fingerprint {rec['fingerprint'][:16]}")
    head = registry.code_version()
    if rec["code_version"] != head:
        say(
            f"warning: version {version} was trained by code {rec['code_version']}, this checkout is {head}: a "
            "difference below may come from the code"
        )
    registered = kinds.load_version(version)  # before the scratch home: the deployment's registry
    with tempfile.TemporaryDirectory(prefix=f"reproduce-v{version}-") as tmp:
        folder = fetch(rec["snapshot"], Path(tmp) / "dvc", dvc)
        try:
            found = snapshots.fingerprint_of(folder)
        except Exception as exc:  # noqa: BLE001 - a file that does not even read is a changed snapshot
            raise RebuildError(
                f"snapshot {rec['snapshot']} of version {version} does not read as a training set ({exc}): it was "
                "changed on the remote"
            ) from exc
        if found != rec["fingerprint"]:
            raise RebuildError(
                f"snapshot {rec['snapshot']} of version {version} does not hold the rows it was trained on: data "
                f"fingerprint {found[:16]}, recorded {rec['fingerprint'][:16]} (the snapshot was changed on the "
                "remote)"
            )
        say(f"fetched by DVC from {snapshots.remote()[0]}; data fingerprint matches")
        meta = snapshots.read_training_set(folder)[1]
        with stages.scratch_home() as home:
            lake = Lake((home / "lake").as_uri())
            key = f"reproduce-v{version}"
            for parts in snapshots.training_set_files(meta):
                lake.write_bytes(folder.joinpath(*parts).read_bytes(), layout.training(key), *parts)
            job = pipeline.train(
                lake,
                key,
                rec["workers"],
                params=rec["params"],
                num_boost_round=rec["num_boost_round"] or 200,
                threads_per_worker=rec["threads_per_worker"],
            )
            rebuilt = lake.read_bytes(layout.training(key), layout.TRAINING_MODEL)
        say(
            f"trained again: {rec['workers']} worker(s), {rec['threads_per_worker']} thread(s) each, "
            f"{rec['num_boost_round']} rounds, the recorded parameters, in {job['wall_s']} s"
        )
        out: dict[str, Any] = {"version": version, "snapshot": rec["snapshot"], "identical": False}
        if snapshots.sha256(rebuilt) == rec["model_sha256"]:
            say(
                f"identical: the rebuilt model is the registered one, byte for byte (sha256 {rec['model_sha256'][:16]})"
            )
            out["identical"] = True
            return out
        import pandas as pd

        holdout = pd.read_parquet(folder / layout.TRAINING_HOLDOUT)
        model = kinds.kind(rec["kind"]).from_staged(rebuilt, kinds.spec_of(meta["spec"]))
        y = holdout[model.spec.label].to_numpy()
        before, after = metrics(y, registered.predict(holdout))["auc"], metrics(y, model.predict(holdout))["auc"]
        out |= {"registered_auc": before, "rebuilt_auc": after, "auc_difference": after - before}
        say(
            f"not identical (training was not deterministic here): AUC on the snapshot's {len(holdout)} held-out rows "
            f"registered {before:.4f}, rebuilt {after:.4f}, difference {after - before:+.4f}"
        )
        return out
