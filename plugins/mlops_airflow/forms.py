"""The DAGs' trigger forms, generated from the files that hold the values: ``params.yaml`` (training), and the gate,
canary and monitoring settings in ``include/config/*.yaml``. A key added to one of those files is a field of the
form; no default is written twice.

These files are the only ones a DAG file reads while it is parsed: small YAML files of the project itself
(no lake, registry, network or heavy import).
"""

from __future__ import annotations

from typing import Any

_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _type(value: Any) -> str | list[str]:
    for py, name in _TYPES.items():
        if type(value) is py:
            return name
    return ["null", "number"] if value is None else "string"


def _humanize(key: str) -> str:
    return key.replace("_", " ").capitalize()


def values_form(
    values: dict[str, Any], titles: dict[str, str] | None = None, limits: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One field per value, its default the value (``params.yaml``: the run's own defaults)."""
    from airflow.sdk import Param

    titles, limits = titles or {}, limits or {}
    return {
        k: Param(v, type=_type(v), title=titles.get(k, _humanize(k)), **limits.get(k, {}))
        for k, v in values.items()
        if not isinstance(v, (list, dict))
    }


def overrides_form(
    config_cls, prefix: str = "", title_prefix: str = "", titles: dict[str, str] | None = None
) -> dict[str, Any]:
    """One optional field per scalar setting of a ``YamlConfig`` file: empty keeps the file's value."""
    from airflow.sdk import Param

    titles = titles or {}
    out = {}
    for k, v in config_cls().as_dict().items():
        if isinstance(v, (list, dict)):
            continue
        t = _type(v)
        out[f"{prefix}{k}"] = Param(
            None,
            type=["null", *([t] if isinstance(t, str) else t[1:])],
            title=f"{title_prefix}{titles.get(k, _humanize(k))}",
            description=f"Empty: {v} (include/config/{config_cls.FILE.name})",
        )
    return out


def overrides(config_cls, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The run's overrides of a ``YamlConfig``, from the form fields ``overrides_form`` made."""
    return {k: params.get(f"{prefix}{k}") for k, v in config_cls().as_dict().items() if not isinstance(v, (list, dict))}
