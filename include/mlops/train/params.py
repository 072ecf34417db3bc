"""The training parameters of ``params.yaml`` at the project's root (``MLOPS_PARAMS`` to use another file; the
settings folder's own when ``MLOPS_CONFIG_DIR`` holds one): the
one home of every default of a training run. train_model's form is generated from it; the Horovod job, LightGBM
and the registry's record of a run read it through here. ``SETTINGS`` declares what each parameter may hold (its
type and range, JSON-schema keywords as in ``core.config.YamlConfig``): the file, ``MLOPS_TRAIN_MIN_DAYS``, the
form's fields and a run's values are all checked against it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.config import PROJECT_ROOT, check_settings, config_dir, read_yaml

SECTIONS = ("train", "lgbm")
_FRACTION = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "train": {
        "window_days": {"type": "integer", "minimum": 3, "maximum": 366},
        "min_days": {"type": "integer", "minimum": 3, "maximum": 366},
        "workers": {"type": "integer", "minimum": 1, "maximum": 64},
        "threads_per_worker": {"type": "integer", "minimum": 1, "maximum": 64},
        "num_boost_round": {"type": "integer", "minimum": 10, "maximum": 5000},
        "timeout_minutes": {"type": "integer", "minimum": 1, "maximum": 720},
    },
    "lgbm": {
        "learning_rate": _FRACTION,
        "num_leaves": {"type": "integer", "minimum": 2, "maximum": 4096},
        "min_data_in_leaf": {"type": "integer", "minimum": 1},
        "feature_fraction": _FRACTION,
        "bagging_fraction": _FRACTION,
        "lambda_l2": {"type": "number", "minimum": 0},
    },
}


def path() -> Path:
    if os.environ.get("MLOPS_PARAMS"):
        return Path(os.environ["MLOPS_PARAMS"])
    own = config_dir() / "params.yaml"  # a settings folder may hold its model's parameters
    return own if os.environ.get("MLOPS_CONFIG_DIR") and own.exists() else PROJECT_ROOT / "params.yaml"


def load(file: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """{"train": {...}, "lgbm": {...}}; a missing section or an unknown one, a missing or undeclared parameter or
    one out of its range is an error, naming the file."""
    f = Path(file) if file else path()
    raw = read_yaml(f)
    missing = [s for s in SECTIONS if not isinstance(raw.get(s), dict)]
    unknown = sorted(set(raw) - set(SECTIONS))
    if missing or unknown:
        raise ValueError(f"{f}: sections {list(SECTIONS)} expected (missing {missing}, unknown {unknown})")
    for s in SECTIONS:
        check_settings(raw[s], SETTINGS[s], f"{f} ({s}:)", declared_in=f"params.SETTINGS[{s!r}]")
    train = dict(raw["train"])
    if os.environ.get("MLOPS_TRAIN_MIN_DAYS"):
        env = os.environ["MLOPS_TRAIN_MIN_DAYS"]
        train["min_days"] = int(env) if env.strip().lstrip("-").isdigit() else env
        check_settings(train, SETTINGS["train"], f"{f} (train:) with MLOPS_TRAIN_MIN_DAYS", overridden={"min_days"})
    return {"train": train, "lgbm": dict(raw["lgbm"])}


def resolve(run: dict[str, Any], file: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """A training run's parameters: ``params.yaml``'s (``load``) with the run's values of the same keys
    (train_model's params, flat: ``workers``, ``learning_rate``...), each checked against ``SETTINGS``: a value of
    the wrong type or out of its range is a ValueError naming the parameter, the value and what is allowed."""
    base = load(file)
    out = {s: {k: run[k] if k in run else v for k, v in base[s].items()} for s in SECTIONS}
    for s in SECTIONS:
        given = {k for k in out[s] if k in run}
        check_settings(out[s], SETTINGS[s], f"train_model's parameters ({s}: of params.yaml)", overridden=given)
    return out
