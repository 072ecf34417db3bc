"""The training parameters of ``params.yaml`` at the project's root (``MLOPS_PARAMS`` to use another file; the
settings folder's own when ``MLOPS_CONFIG_DIR`` holds one): the
one home of every default of a training run. train_model's form is generated from it; the Horovod job, LightGBM
and the registry's record of a run read it through here. ``SETTINGS`` declares what each parameter may hold (its
type and range, JSON-schema keywords as in ``core.config.YamlConfig``): the file, ``MLOPS_TRAIN_MIN_DAYS``, the
form's fields and a run's values are all checked against it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .. import kinds
from ..core.config import PROJECT_ROOT, check_settings, config_dir, read_yaml

# the model kinds (include/mlops/kinds/<kind>.py) and the section of params.yaml each one's parameters are in
KINDS: dict[str, str] = {name: module.PARAMS for name, module in kinds.available().items()}
# the data `dvc repro` trains on (dvc.yaml's snapshot stage, include/mlops/repro): optional, read by no DAG
SNAPSHOT = "snapshot"
# the hyperparameter search tune_model runs (include/mlops/train/tune.py): optional, read by no training run
TUNE = "tune"
SECTIONS = ("train", *KINDS.values(), SNAPSHOT, TUNE)
# a Horovod host list, ``host:slots[,host:slots...]`` (train_model's ``hosts``, ``MLOPS_HOROVOD_HOSTS``)
HOSTS = r"^[A-Za-z0-9][A-Za-z0-9.-]*:[1-9][0-9]{0,3}(,[A-Za-z0-9][A-Za-z0-9.-]*:[1-9][0-9]{0,3})*$"
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "train": {
        "kind": {"type": "string", "enum": list(KINDS)},  # the model kind a run trains
        "window_days": {"type": "integer", "minimum": 3, "maximum": 366},
        "validation_share": {"type": "number", "minimum": 0.05, "maximum": 0.4},
        "test_share": {"type": "number", "minimum": 0.05, "maximum": 0.4},
        "min_days": {"type": "integer", "minimum": 3, "maximum": 366},
        "workers": {"type": "integer", "minimum": 1, "maximum": 64},
        "threads_per_worker": {"type": "integer", "minimum": 1, "maximum": 64},
        "num_boost_round": {"type": "integer", "minimum": 10, "maximum": 5000},
        "timeout_minutes": {"type": "integer", "minimum": 1, "maximum": 720},
    },
    **{section: kinds.kind(k).SETTINGS for k, section in KINDS.items()},
    SNAPSHOT: {
        "first": {"type": "string", "format": "date"},  # the snapshot's first and last day (ISO dates)
        "last": {"type": "string", "format": "date"},
    },
    TUNE: {
        "trials": {"type": "integer", "minimum": 1, "maximum": 500},  # the study's budget: trials in all ...
        "minutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 24 * 60},  # ... and wall time
        "trials_per_round": {"type": "integer", "minimum": 1, "maximum": 32},  # asked at once, trained side by side
        "seed": {"type": "integer", "minimum": 0},
        "margin": {"type": "number", "minimum": 0, "maximum": 1},  # what "beats the defaults" needs
        "space": {"type": "object"},  # per parameter: {low, high, log} or {choices} (tune.space checks it)
    },
}


def check_hosts(hosts: str | None, setting: str = "hosts") -> None:
    """``host:slots[,host:slots...]``; anything else (``-v:1``, spaces, options) is refused, naming the setting."""
    if hosts and not re.match(HOSTS, hosts):
        raise ValueError(f"{setting} {hosts!r} is not a Horovod host list like 'node1:4,node2:4'")


def default_hosts() -> str | None:
    """The deployment's Horovod hosts (``MLOPS_HOROVOD_HOSTS``, train_model's ``hosts`` default: scheduled and Asset
    runs take it); unset or empty: the task's own host. Anything but a host list is an error naming the setting
    (read when the DAG files are parsed: every run would otherwise be refused)."""
    value = os.environ.get("MLOPS_HOROVOD_HOSTS", "").strip()
    check_hosts(value, "MLOPS_HOROVOD_HOSTS")
    return value or None


def section(kind: str) -> str:
    """The section of params.yaml that holds a kind's parameters."""
    return KINDS[kind]


def path() -> Path:
    if os.environ.get("MLOPS_PARAMS"):
        return Path(os.environ["MLOPS_PARAMS"])
    own = config_dir() / "params.yaml"  # a settings folder may hold its model's parameters
    return own if os.environ.get("MLOPS_CONFIG_DIR") and own.exists() else PROJECT_ROOT / "params.yaml"


def load(file: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """{"train": {...}, <the kinds' sections>: {...}}: ``train:`` and the section of the kind it names are
    required, another kind's section is optional (a run may switch to it); an unknown section, a missing or
    undeclared parameter or one out of its range is an error, naming the file."""
    f = Path(file) if file else path()
    raw = read_yaml(f)
    train = raw.get("train")
    kind = train.get("kind", kinds.DEFAULT_KIND) if isinstance(train, dict) else None
    if isinstance(train, dict) and "kind" not in train:
        train = {"kind": kind, **train}  # a file from before kinds trains LightGBM
    wanted = ["train", KINDS[kind]] if kind in KINDS else ["train"]
    missing = [s for s in wanted if not isinstance(raw.get(s), dict)]
    unknown = sorted(set(raw) - set(SECTIONS))
    if missing or unknown:
        raise ValueError(
            f"{f}: sections {wanted} expected, and any of {list(SECTIONS)} (missing {missing}, unknown {unknown})"
        )
    out = {"train": dict(train)}
    out |= {s: dict(raw[s]) for s in SECTIONS if s != "train" and isinstance(raw.get(s), dict)}
    for s, values in out.items():
        check_settings(values, SETTINGS[s], f"{f} ({s}:)", declared_in=f"params.SETTINGS[{s!r}]")
    if os.environ.get("MLOPS_TRAIN_MIN_DAYS"):
        env = os.environ["MLOPS_TRAIN_MIN_DAYS"]
        out["train"]["min_days"] = int(env) if env.strip().lstrip("-").isdigit() else env
        check_settings(
            out["train"], SETTINGS["train"], f"{f} (train:) with MLOPS_TRAIN_MIN_DAYS", overridden={"min_days"}
        )
    return out


def resolve(run: dict[str, Any], file: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """A training run's parameters: ``params.yaml``'s (``load``) with the run's values of the same keys
    (train_model's params, flat: ``workers``, ``learning_rate``...), each checked against ``SETTINGS``: a value of
    the wrong type or out of its range is a ValueError naming the parameter, the value and what is allowed. A run
    of another kind than the file's needs that kind's section in the file."""
    base = load(file)
    out = {s: {k: run[k] if k in run else v for k, v in base[s].items()} for s in base if s not in (SNAPSHOT, TUNE)}
    for s in out:
        given = {k for k in out[s] if k in run}
        check_settings(out[s], SETTINGS[s], f"train_model's parameters ({s}: of params.yaml)", overridden=given)
    kind = out["train"]["kind"]
    if KINDS[kind] not in out:
        raise ValueError(f"train_model's kind {kind!r} has no {KINDS[kind]}: section in {file or path()}")
    return out


def model_values(resolved: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """(the kind of a resolved run, its parameters)."""
    kind = resolved["train"]["kind"]
    return kind, dict(resolved[KINDS[kind]])
