"""Settings from the environment, and per-component settings (gate, canary, monitoring) from YAML.

Environment:
  MLOPS_HOME       local state (Airflow home, lake, tracking); default ``.mlops`` in the project root
  MLOPS_LAKE_URL   the lake's root URL: ``file:///...`` or ``s3://bucket/prefix``; default ``$MLOPS_HOME/lake``
  MLOPS_DATASETS   path of the data sets' and models' declaration; default ``datasets.yaml`` in the settings
                   folder (``MLOPS_CONFIG_DIR``, else ``include/config/``)
  MLOPS_EXPECTATIONS_DIR  folder of the Great Expectations suites; default ``expectations/`` in the settings
                   folder when it has one, else the project's ``expectations/``
  MLOPS_CONFIG_DIR the settings folder (``config_dir``): a file it lacks is the project's own, in ``include/config/``
"""

from __future__ import annotations

import datetime as dt
import math
import operator
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
        config = Path(env.get("MLOPS_CONFIG_DIR") or CONFIG_DIR)
        datasets = Path(env.get("MLOPS_DATASETS") or config / "datasets.yaml")
        own = config / "expectations"  # a settings folder may hold its data sets' suites
        default = own if env.get("MLOPS_CONFIG_DIR") and own.is_dir() else PROJECT_ROOT / "expectations"
        expectations = Path(env.get("MLOPS_EXPECTATIONS_DIR") or default)
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


MIN_SERVE_TOKEN = 32  # characters: a random token this long cannot be guessed


def serve_token_problem(token: str, where: str = "MLOPS_SERVE_TOKEN") -> str | None:
    """Why the prediction service refuses ``token`` (None: it takes it); ``where``: where it came from. One rule
    for the service, which refuses to start with it, and the production launcher (``scripts/prod/prod_config.py``)."""
    if len(token) < MIN_SERVE_TOKEN:
        return (
            f"the prediction service's token ({where}) is too short ({len(token)} characters, need at least "
            f"{MIN_SERVE_TOKEN}): make one with python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return None


def serve_auth(token: str | None) -> dict[str, str]:
    """The header a caller of /predict sends: the bearer token when there is one."""
    return {"authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True)
class ServeSettings:
    """The prediction service's settings (``python -m include.mlops.serve.app``), from its environment; each
    default here is the service's:

      MLOPS_SERVE_HOST, MLOPS_SERVE_PORT    where it listens
      MLOPS_SERVE_TOKEN, MLOPS_SERVE_TOKEN_FILE  the bearer token /predict requires (``serve_token``)
      MLOPS_SERVE_REFRESH_S                 seconds between two readings of the aliases and the rollout
      MLOPS_SERVE_FLUSH_S                   seconds a prediction record waits at most before it is written
      MLOPS_SERVE_MAX_BODY_BYTES            a larger body gets 413 before it is parsed
      MLOPS_SERVE_MAX_BATCH                 the most flights in one batch
      MLOPS_SERVE_THREADS                   LightGBM threads per prediction (1 fits concurrent requests on few cores)
      MLOPS_SERVE_LOG_MAX_ROWS              prediction records held in memory at most (then spilled to disk)
      MLOPS_SERVE_SPILL_DIR                 where they spill (None: under MLOPS_HOME, one folder per lake)
      MLOPS_SERVE_MAX_CONNECTIONS           connections open at most (None: 1000, or fewer where the process's
                                            open-file limit is lower: ``serve.server.Limits``)
      MLOPS_SERVE_HEADER_TIMEOUT_S, MLOPS_SERVE_BODY_TIMEOUT_S, MLOPS_SERVE_KEEPALIVE_S
                                            seconds for a request's headers, for its body, and an idle connection's

    A variable set empty keeps the default; a value that is not a number is a ValueError naming the variable, and
    so is a server limit that is not above 0."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    refresh_s: float = 10.0
    flush_s: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024  # about 20,000 flights with their weather
    max_batch: int = 10_000
    threads: int = 1
    log_max_rows: int = 100_000
    spill_dir: Path | None = None
    max_connections: int | None = None
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0  # 8 MiB (the body limit) at 140 kB/s
    keepalive_s: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServeSettings:
        env = os.environ if env is None else env

        def number(name: str, kind: type, default: Any, above_zero: bool = False) -> Any:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value) or (above_zero and not value > 0):
                what = "a whole number" if kind is int else "a number of seconds"
                raise ValueError(f"{name}={raw!r} is not {what}{' above 0' if above_zero else ''}")
            return value

        d = cls()
        return cls(
            host=env.get("MLOPS_SERVE_HOST") or d.host,
            port=number("MLOPS_SERVE_PORT", int, d.port),
            token=serve_token(env),
            refresh_s=number("MLOPS_SERVE_REFRESH_S", float, d.refresh_s),
            flush_s=number("MLOPS_SERVE_FLUSH_S", float, d.flush_s),
            max_body_bytes=number("MLOPS_SERVE_MAX_BODY_BYTES", int, d.max_body_bytes),
            max_batch=number("MLOPS_SERVE_MAX_BATCH", int, d.max_batch),
            threads=number("MLOPS_SERVE_THREADS", int, d.threads),
            log_max_rows=number("MLOPS_SERVE_LOG_MAX_ROWS", int, d.log_max_rows),
            spill_dir=Path(env["MLOPS_SERVE_SPILL_DIR"]) if env.get("MLOPS_SERVE_SPILL_DIR") else None,
            max_connections=number("MLOPS_SERVE_MAX_CONNECTIONS", int, None, above_zero=True),
            header_timeout_s=number("MLOPS_SERVE_HEADER_TIMEOUT_S", float, d.header_timeout_s, above_zero=True),
            body_timeout_s=number("MLOPS_SERVE_BODY_TIMEOUT_S", float, d.body_timeout_s, above_zero=True),
            keepalive_s=number("MLOPS_SERVE_KEEPALIVE_S", float, d.keepalive_s, above_zero=True),
        )


CONFIG_DIR = PROJECT_ROOT / "include" / "config"


def config_dir() -> Path:
    """Where the settings files are read: ``MLOPS_CONFIG_DIR`` (a copy of ``include/config/`` with your values),
    else the project's own."""
    return Path(os.environ.get("MLOPS_CONFIG_DIR") or CONFIG_DIR)


def config_file(name: str) -> Path:
    """A settings file of ``config_dir()``; the project's own (``include/config/``) when that folder lacks it, so a
    team's folder holds only the files it changes."""
    own = config_dir() / name
    return own if own.exists() else CONFIG_DIR / name


class ConfigFile:
    """A settings file by name, found by ``config_file`` when it is asked for (a class attribute: ``FILE``)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, owner) -> Path:
        return config_file(self.name)


class YamlConfig:
    """Settings whose values live in one YAML file (``FILE``), the one home of each value: the code holds no
    defaults of its own. Read as attributes (``cfg.min_auc``); per-run overrides may change known keys only (None
    keeps the file's value), so a misspelt override is refused instead of ignored.

    ``SETTINGS`` declares what each key may hold, as JSON-schema keywords (``type``, ``minimum``, ``maximum``,
    ``exclusiveMinimum``, ``exclusiveMaximum``, ``enum``, ``items``, ``properties``, ``additionalProperties``,
    ``required``): the one home of each setting's type and range. The config checks itself against it when it is
    made (the file's values and the run's overrides alike; every declared key must be in the file, and a key of
    the file must be declared), and the DAGs' forms carry the same bounds (``mlops_airflow.blocks.forms``). A value out of
    its range is a ValueError naming the file, the key, the value and what is allowed.

    ``GateConfig(**overrides)`` is the file's values with those overrides; ``load(path, overrides)`` reads
    another file."""

    FILE: Path
    SETTINGS: dict[str, dict[str, Any]] = {}

    def __init__(self, values: dict[str, Any] | None = None, source: str | None = None, /, **overrides: Any):
        base = dict(values) if values is not None else read_yaml(self.FILE)
        source = source or str(self.FILE)
        known = set(base)
        unknown = {k for k, v in overrides.items() if k not in known}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)} for {self.FILE.name}; known: {sorted(known)}")
        changed = {k: v for k, v in overrides.items() if v is not None}
        base |= changed
        check_settings(base, self.SETTINGS, source, overridden=set(changed), declared_in=type(self).__name__)
        self._check(base, f"{source}, overridden" if changed else source)
        object.__setattr__(self, "_values", base)
        object.__setattr__(self, "_source", source)

    def _check(self, values: dict[str, Any], source: str) -> None:
        """Rules between settings (each one's own range is ``SETTINGS``'); none by default."""

    @classmethod
    def load(cls, path: Path | str | None = None, overrides: dict[str, Any] | None = None):
        values = read_yaml(Path(path)) if path else None
        return cls(values, str(path) if path else None, **(overrides or {}))

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
        return type(self)(self.as_dict(), self.__dict__["_source"], **overrides)


_KINDS = {
    "null": "null",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
}
_BOUNDS = (
    ("exclusiveMinimum", ">", operator.gt),
    ("minimum", ">=", operator.ge),
    ("exclusiveMaximum", "<", operator.lt),
    ("maximum", "<=", operator.le),
)


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _is(value: Any, kind: str, schema: dict[str, Any]) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":  # a bool is an int to Python, never to a setting
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "string":  # YAML reads an unquoted 2013-01-01 as a date
        return isinstance(value, str) or (schema.get("format") == "date" and isinstance(value, dt.date))
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "object":
        return isinstance(value, dict)
    raise ValueError(f"unknown type {kind!r} in a setting's declaration")


def describe(schema: dict[str, Any]) -> str:
    """What a declaration allows, in words: ``null or a number > 0 and < 1``."""
    kinds = _types(schema)
    words = []
    for kind in kinds:
        if kind == "null":
            continue
        w = "a date YYYY-MM-DD" if kind == "string" and schema.get("format") == "date" else _KINDS[kind]
        if kind in ("integer", "number"):
            bounds = [f"{op} {schema[k]}" for k, op, _ in _BOUNDS if k in schema]
            w += (" " + " and ".join(bounds)) if bounds else ""
        if kind == "array" and isinstance(schema.get("items"), dict):
            w += f" (each {describe(schema['items'])})"
        words.append(w)
    if "enum" in schema:
        words = [f"one of {[v for v in schema['enum'] if v is not None]}"]
    return " or ".join((["null"] if "null" in kinds else []) + words)


def check_value(schema: dict[str, Any], value: Any, field: str) -> None:
    """``value`` against a setting's declaration (JSON-schema keywords, see ``YamlConfig``); a ValueError names
    ``field``, the value and what is allowed. Nested keys are named ``numeric.ks``, list items ``ignore[0]``."""

    def refuse(why: str = "") -> None:
        raise ValueError(f"{field} = {value!r}: must be {describe(schema)}{why}")

    kinds = [k for k in _types(schema) if _is(value, k, schema)]
    if not kinds:
        refuse()
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        refuse()
    kind = kinds[0]
    if kind in ("integer", "number"):
        if any(key in schema and not holds(value, schema[key]) for key, _, holds in _BOUNDS):
            refuse()
    elif kind == "string" and schema.get("format") == "date" and isinstance(value, str):
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            refuse()
    elif kind == "array" and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            check_value(schema["items"], item, f"{field}[{i}]")
    elif kind == "object":
        props, other = schema.get("properties", {}), schema.get("additionalProperties", True)
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            refuse(f" with the keys {missing} (missing)")
        for k, v in value.items():
            sub = props.get(k, other)
            if sub is False:
                refuse(f"; {k!r} is not one of its keys {sorted(props)}")
            if isinstance(sub, dict):
                check_value(sub, v, f"{field}.{k}")


def check_settings(
    values: dict[str, Any],
    settings: dict[str, dict[str, Any]],
    source: str,
    overridden: set[str] | frozenset[str] = frozenset(),
    declared_in: str = "SETTINGS",
) -> None:
    """A file's settings (with a run's overrides, ``overridden``) against their declarations: every declared key
    present, none undeclared, each value in its range. A ValueError names ``source``, the key, the value and
    what is allowed."""
    missing = [k for k in settings if k not in values]
    if missing:
        raise ValueError(f"{source}: settings {missing} are missing (the file holds every value)")
    undeclared = sorted(set(values) - set(settings))
    if undeclared:
        raise ValueError(
            f"{source}: settings {undeclared} have no declaration (their type and range) in {declared_in}.SETTINGS"
        )
    for k, schema in settings.items():
        try:
            check_value(schema, values[k], k)
        except ValueError as exc:
            where = f"{source}, overridden" if k in overridden else source
            raise ValueError(f"{where}: {exc}") from None


def safe_yaml(text: str) -> Any:
    """YAML read as ``yaml.safe_load`` reads it, through libyaml's loader where PyYAML has it (about ten times
    faster: every task process parses its DAG file, and the DAG files read these files for their forms)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def read_yaml(path: Path | str) -> dict[str, Any]:
    raw = safe_yaml(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return raw


class ScheduleConfig(YamlConfig):
    """When the daily DAGs run (``include/config/schedule.yaml``), with ``MLOPS_START_DATE``, ``MLOPS_END_DATE``
    ``MLOPS_CATCHUP`` and ``MLOPS_REPLAY`` overriding it for one deployment.

    The window of data dates is fixed: ``start_date`` is required (a date never moves with the day the files are
    parsed), ``end_date`` is optional (no end) and not before it. ``outside(day)`` says why a data date is not in
    the window (None when it is)."""

    FILE = ConfigFile("schedule.yaml")
    ENV = {"start_date": "MLOPS_START_DATE", "end_date": "MLOPS_END_DATE"}
    SETTINGS = {
        "start_date": {"type": "string", "format": "date"},
        "end_date": {"type": ["null", "string"], "format": "date"},
        "catchup": {"type": "boolean"},
        "replay": {"type": "boolean"},
        "replay_poke_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    }

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ScheduleConfig:
        env = os.environ if env is None else env

        def flag(name: str) -> bool | None:
            value = env.get(name)
            return None if value in (None, "") else value.strip().lower() in ("1", "true", "yes", "on")

        try:
            return cls(
                start_date=env.get("MLOPS_START_DATE") or None,
                end_date=env.get("MLOPS_END_DATE") or None,
                catchup=flag("MLOPS_CATCHUP"),
                replay=flag("MLOPS_REPLAY"),
            )
        except ValueError as exc:
            raise ValueError(f"{exc} ({', '.join(f'{v} overrides {k}' for k, v in cls.ENV.items())})") from None

    def _check(self, values: dict[str, Any], source: str) -> None:
        start = _day(values["start_date"], "start_date", source)
        end = _day(values["end_date"], "end_date", source)
        if end is not None and end < start:
            raise ValueError(f"{source}: end_date = {end.isoformat()!r}: before start_date {start.isoformat()}")

    def window(self) -> tuple[dt.date, dt.date | None]:
        """The first and the last data date (None: no end)."""
        return _day(self.start_date, "start_date"), _day(self.end_date, "end_date")

    def outside(self, day: dt.date | str) -> str | None:
        """Why data date ``day`` is outside the window (naming the window and the settings that move it), or None
        when it is inside."""
        d = dt.date.fromisoformat(str(day)[:10]) if not isinstance(day, dt.date) else day
        start, end = self.window()
        if start <= d and (end is None or d <= end):
            return None
        where = "before" if d < start else "after"
        return (
            f"{d.isoformat()} is {where} the window of data dates {start.isoformat()} .. "
            f"{end.isoformat() if end else '(no end)'} (start_date / end_date of {self.FILE.name}, or "
            f"MLOPS_START_DATE / MLOPS_END_DATE)"
        )


def _day(value: Any, key: str, source: str = "") -> dt.date | None:
    """A window's date: a ``date`` (YAML's reading of 2013-01-01) or the string YYYY-MM-DD; None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    text = str(value)
    try:
        if len(text) != 10 or text[4] != "-" or text[7] != "-":
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{source + ': ' if source else ''}{key} = {value!r}: must be a date YYYY-MM-DD") from None
