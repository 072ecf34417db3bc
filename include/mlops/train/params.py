"""The training parameters of ``params.yaml`` at the project's root (``MLOPS_PARAMS`` to use another file): the
one home of every default of a training run. train_model's form is generated from it; the Horovod job, LightGBM
and the registry's record of a run read it through here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.config import PROJECT_ROOT, read_yaml

SECTIONS = ("train", "lgbm")


def path() -> Path:
    return Path(os.environ.get("MLOPS_PARAMS") or PROJECT_ROOT / "params.yaml")


def load(file: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """{"train": {...}, "lgbm": {...}}; a missing section or an unknown one is an error, naming the file."""
    f = Path(file) if file else path()
    raw = read_yaml(f)
    missing = [s for s in SECTIONS if not isinstance(raw.get(s), dict)]
    unknown = sorted(set(raw) - set(SECTIONS))
    if missing or unknown:
        raise ValueError(f"{f}: sections {list(SECTIONS)} expected (missing {missing}, unknown {unknown})")
    train = dict(raw["train"])
    if os.environ.get("MLOPS_TRAIN_MIN_DAYS"):
        train["min_days"] = int(os.environ["MLOPS_TRAIN_MIN_DAYS"])
    return {"train": train, "lgbm": dict(raw["lgbm"])}
