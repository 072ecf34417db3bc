"""Settings from the environment and the dataset specifications from YAML.

Environment:
  MLOPS_HOME       local state (Airflow home, lake, tracking); default ``.mlops`` in the project root
  MLOPS_LAKE_URL   the lake's root URL: ``file:///...`` or ``s3://bucket/prefix``; default ``$MLOPS_HOME/lake``
  MLOPS_DATASETS   path of the dataset specification YAML; default ``include/config/datasets.yaml``
  MLOPS_EXPECTATIONS_DIR  folder of the Great Expectations suites; default ``expectations/``
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Settings:
    home: Path
    lake_url: str
    datasets_file: Path
    expectations_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("MLOPS_HOME") or PROJECT_ROOT / ".mlops").expanduser().resolve()
        lake_url = env.get("MLOPS_LAKE_URL") or (home / "lake").as_uri()
        datasets = Path(env.get("MLOPS_DATASETS") or PROJECT_ROOT / "include" / "config" / "datasets.yaml")
        expectations = Path(env.get("MLOPS_EXPECTATIONS_DIR") or PROJECT_ROOT / "expectations")
        return cls(home=home, lake_url=lake_url.rstrip("/"), datasets_file=datasets, expectations_dir=expectations)


@dataclass(frozen=True)
class LabelSpec:
    """Binary label: ``name = source > threshold``; a null source leaves the row unlabelled."""

    source: str
    threshold: float
    name: str = "label"


@dataclass(frozen=True)
class DatasetSpec:
    """What ingestion needs to know about one upstream data set."""

    name: str
    landing_file: str
    columns: dict[str, str]
    key: tuple[str, ...]
    suite: str
    event_time: str | None = None
    date_columns: dict[str, str] = field(default_factory=dict)
    label: LabelSpec | None = None
    csv_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> "DatasetSpec":
        unknown = set(raw) - {
            "landing_file", "columns", "key", "suite", "event_time", "date_columns", "label", "csv_options",
        }
        if unknown:
            raise ValueError(f"dataset {name!r}: unknown keys {sorted(unknown)}")
        for required in ("columns", "key"):
            if required not in raw:
                raise ValueError(f"dataset {name!r}: {required!r} is required")
        columns = {str(k): str(v) for k, v in raw["columns"].items()}
        allowed = {"int", "float", "string", "timestamp", "bool"}
        bad = {c: t for c, t in columns.items() if t not in allowed}
        if bad:
            raise ValueError(f"dataset {name!r}: column types must be one of {sorted(allowed)}, got {bad}")
        key = tuple(raw["key"])
        missing = [c for c in key if c not in columns]
        if missing:
            raise ValueError(f"dataset {name!r}: key columns {missing} are not declared in columns")
        label = raw.get("label")
        return cls(
            name=name,
            landing_file=raw.get("landing_file", f"{name}.csv"),
            columns=columns,
            key=key,
            suite=raw.get("suite", name),
            event_time=raw.get("event_time"),
            date_columns=dict(raw.get("date_columns") or {}),
            label=LabelSpec(**label) if label else None,
            csv_options=dict(raw.get("csv_options") or {}),
        )


def load_datasets(path: Path | str) -> dict[str, DatasetSpec]:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"dataset specification {path} not found (set MLOPS_DATASETS)") from exc
    if not isinstance(raw, dict) or "datasets" not in raw:
        raise ValueError(f"{path}: expected a mapping with a 'datasets' key")
    return {name: DatasetSpec.from_dict(name, spec) for name, spec in raw["datasets"].items()}


@lru_cache(maxsize=8)
def _cached_datasets(path: str, mtime: float) -> dict[str, DatasetSpec]:
    return load_datasets(path)


def dataset(name: str, settings: Settings | None = None) -> DatasetSpec:
    settings = settings or Settings.from_env()
    path = settings.datasets_file
    specs = _cached_datasets(str(path), path.stat().st_mtime if path.exists() else 0.0)
    if name not in specs:
        raise KeyError(f"dataset {name!r} is not declared in {path}; declared: {sorted(specs)}")
    return specs[name]


def load_yaml_settings(cls, path: Path | str, overrides: dict[str, Any] | None = None):
    """A frozen settings dataclass from a YAML file, with per-run overrides (None means: keep the file's)."""
    import dataclasses

    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    raw |= {k: v for k, v in (overrides or {}).items() if v is not None}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)} in {path}; known: {sorted(known)}")
    for f in dataclasses.fields(cls):
        if f.name in raw and isinstance(f.default, tuple):
            raw[f.name] = tuple(raw[f.name])
    return cls(**raw)
