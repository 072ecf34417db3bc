"""The DAGs' trigger forms, generated from the files that hold the values: ``params.yaml`` (training), and the gate,
canary and monitoring settings in ``include/config/*.yaml``. A key added to one of those files is a field of the
form; no default is written twice. Each field carries its setting's type and range as declared next to its config
(``SETTINGS`` of ``include/mlops/train/params.py`` and of each ``YamlConfig``), so the form, a REST or CLI
``conf`` (Airflow checks it against the Params) and the config object itself refuse the same values.

These files are the only ones a DAG file reads while it is parsed: small YAML files of the project itself
(no lake, registry, network or heavy import).
"""

from __future__ import annotations

from typing import Any

_SCALARS = {"null", "boolean", "integer", "number", "string"}


def _humanize(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _scalar(schema: dict[str, Any]) -> bool:
    t = schema.get("type", [])
    return set([t] if isinstance(t, str) else t) <= _SCALARS


def values_form(
    values: dict[str, Any], titles: dict[str, str] | None, settings: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One field per value, its default the value (``params.yaml``: the run's own defaults), its type and range
    the parameter's declaration in ``settings`` (``params.SETTINGS[section]``)."""
    from airflow.sdk import Param

    titles = titles or {}
    return {
        k: Param(v, title=titles.get(k, _humanize(k)), **settings[k]) for k, v in values.items() if _scalar(settings[k])
    }


def overrides_form(
    config_cls, prefix: str = "", title_prefix: str = "", titles: dict[str, str] | None = None
) -> dict[str, Any]:
    """One optional field per scalar setting of a ``YamlConfig`` file: empty keeps the file's value; a value must
    be what the setting's declaration (``config_cls.SETTINGS``) allows."""
    from airflow.sdk import Param

    from include.mlops.core.config import describe

    titles, values = titles or {}, config_cls().as_dict()
    out = {}
    for k, schema in config_cls.SETTINGS.items():
        if not _scalar(schema):
            continue
        t = schema["type"]
        field = dict(schema, type=["null", *[x for x in ([t] if isinstance(t, str) else t) if x != "null"]])
        if "enum" in field:
            field["enum"] = [None, *[v for v in field["enum"] if v is not None]]
        out[f"{prefix}{k}"] = Param(
            None,
            title=f"{title_prefix}{titles.get(k, _humanize(k))}",
            description=f"Empty: {values[k]} (include/config/{config_cls.FILE.name}). Allowed: {describe(schema)}.",
            **field,
        )
    return out


def overrides(config_cls, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The run's overrides of a ``YamlConfig``, from the form fields ``overrides_form`` made."""
    return {k: params.get(f"{prefix}{k}") for k, s in config_cls.SETTINGS.items() if _scalar(s)}


def run_config(config_cls, params: dict[str, Any], prefix: str = ""):
    """The run's ``YamlConfig``: the file's values with the run's overrides, checked against the declarations. A
    value out of its range (from the form, a REST or CLI ``conf``, or the file) fails the task for good, naming
    the setting, the value and what is allowed: retrying cannot fix it, and nothing has changed yet."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return config_cls(**overrides(config_cls, params, prefix))
    except ValueError as exc:
        raise AirflowFailException(f"refused before changing anything: {exc}") from None


def known_conf(context) -> None:
    """A run's ``conf`` names only fields of its DAG's form. Airflow passes an unknown key through, unchecked and
    unused: a misspelt setting, or one that no longer exists (``canary_share`` after the ramp replaced it), would run
    on the file's values without a word. Fails the task for good, naming the keys and the fields."""
    from airflow.sdk.exceptions import AirflowFailException

    dag = context.get("dag")
    if dag is None:  # a task callable called without a run (the unit tests' contexts): no conf to check
        return
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    unknown = sorted(set(conf) - set(dag.params))
    if unknown:
        raise AirflowFailException(
            f"refused before changing anything: {unknown} are not fields of {dag.dag_id}'s form "
            f"(its fields: {sorted(dag.params)})"
        )


def run_params(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A training run's parameters (``params.yaml`` with the run's values), checked like ``run_config``."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.train.params import resolve

    try:
        return resolve(params)
    except ValueError as exc:
        raise AirflowFailException(f"refused before changing anything: {exc}") from None
