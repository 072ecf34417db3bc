"""Rank functions for fault tests: the real ``train_rank`` with a fault injected into rank 1 only.

Importable by Horovod's spawned workers because the tests put this folder on PYTHONPATH.
"""

import os
import time

from include.mlops.kinds import lightgbm as lgbm
from include.mlops.train import distributed


def _rank() -> int:
    return int(os.environ.get("HOROVOD_RANK", "0"))


def raise_on_rank1(job):
    if _rank() == 1:

        def broken(*args, **kwargs):
            raise ValueError("injected fault: shard 1 is corrupt")

        lgbm.dataset = broken
    return distributed.train_rank(job)


def hang_on_rank1(job):
    if _rank() == 1:
        from include.mlops.core.lake import Lake

        def stuck(self, *parts):
            time.sleep(3600)  # alive, but never joins the others

        Lake.read_parquet = stuck
    return distributed.train_rank(job)
