"""Settings from the environment, and per-component settings (gate, canary, monitoring) from YAML.

Environment:
  MLOPS_HOME       local state (Airflow home, lake, tracking); default ``.mlops`` in the project root
  MLOPS_LAKE_URL   the lake's root URL: ``file:///...`` or ``s3://bucket/prefix``; default ``$MLOPS_HOME/lake``
  MLOPS_DATASETS   path of the dataset specification YAML; default ``include/config/datasets.yaml``
  MLOPS_EXPECTATIONS_DIR  folder of the Great Expectations suites; default ``expectations/``
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("MLOPS_HOME") or PROJECT_ROOT / ".mlops").expanduser().resolve()
        lake_url = env.get("MLOPS_LAKE_URL") or (home / "lake").as_uri()
        datasets = Path(env.get("MLOPS_DATASETS") or PROJECT_ROOT / "include" / "config" / "datasets.yaml")
        expectations = Path(env.get("MLOPS_EXPECTATIONS_DIR") or PROJECT_ROOT / "expectations")
        return cls(home=home, lake_url=lake_url.rstrip("/"), datasets_file=datasets, expectations_dir=expectations)


def serve_token(env: dict[str, str] | None = None) -> str | None:
    """The bearer token the prediction service requires on /predict: ``MLOPS_SERVE_TOKEN``, else the first line
    of the file ``MLOPS_SERVE_TOKEN_FILE``; None (no token) when neither is set. The service and its callers (the
    traffic replay) both read it here."""
    env = os.environ if env is None else env
    if env.get("MLOPS_SERVE_TOKEN", "").strip():
        return env["MLOPS_SERVE_TOKEN"].strip()
    if env.get("MLOPS_SERVE_TOKEN_FILE"):
        lines = Path(env["MLOPS_SERVE_TOKEN_FILE"]).read_text().strip().splitlines()
        if not lines or not lines[0].strip():
            raise ValueError(f"MLOPS_SERVE_TOKEN_FILE={env['MLOPS_SERVE_TOKEN_FILE']} holds no token")
        return lines[0].strip()
    return None


def serve_auth(token: str | None) -> dict[str, str]:
    """The header a caller of /predict sends: the bearer token when there is one."""
    return {"authorization": f"Bearer {token}"} if token else {}


CONFIG_DIR = PROJECT_ROOT / "include" / "config"


def config_dir() -> Path:
    """Where the settings files are read: ``MLOPS_CONFIG_DIR`` (a copy of ``include/config/`` with your values),
    else the project's own."""
    return Path(os.environ.get("MLOPS_CONFIG_DIR") or CONFIG_DIR)


class ConfigFile:
    """A settings file by name, found in ``config_dir()`` when it is asked for (a class attribute: ``FILE``)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, owner) -> Path:
        return config_dir() / self.name


class YamlConfig:
    """Settings whose values live in one YAML file (``FILE``), the one home of each value: the code holds no
    defaults of its own. Read as attributes (``cfg.min_auc``); per-run overrides may change known keys only (None
    keeps the file's value), so a misspelt override is refused instead of ignored.

    ``GateConfig(**overrides)`` is the file's values with those overrides; ``load(path, overrides)`` reads
    another file."""

    FILE: Path

    def __init__(self, values: dict[str, Any] | None = None, /, **overrides: Any):
        base = dict(values) if values is not None else read_yaml(self.FILE)
        known = set(base)
        unknown = {k for k, v in overrides.items() if k not in known}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)} for {self.FILE.name}; known: {sorted(known)}")
        base |= {k: v for k, v in overrides.items() if v is not None}
        object.__setattr__(self, "_values", base)

    @classmethod
    def load(cls, path: Path | str | None = None, overrides: dict[str, Any] | None = None):
        values = read_yaml(Path(path)) if path else None
        return cls(values, **(overrides or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.as_dict() == self.as_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__["_values"])

    def replace(self, **overrides: Any):
        return type(self)(self.as_dict(), **overrides)


def read_yaml(path: Path | str) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return raw


class ScheduleConfig(YamlConfig):
    """When the daily DAGs run (``include/config/schedule.yaml``), with ``MLOPS_START_DATE``, ``MLOPS_END_DATE``
    ``MLOPS_CATCHUP`` and ``MLOPS_REPLAY`` overriding it for one deployment."""

    FILE = ConfigFile("schedule.yaml")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ScheduleConfig:
        env = os.environ if env is None else env

        def flag(name: str) -> bool | None:
            value = env.get(name)
            return None if value in (None, "") else value.strip().lower() in ("1", "true", "yes", "on")

        return cls(
            start_date=env.get("MLOPS_START_DATE") or None,
            end_date=env.get("MLOPS_END_DATE") or None,
            catchup=flag("MLOPS_CATCHUP"),
            replay=flag("MLOPS_REPLAY"),
        )
