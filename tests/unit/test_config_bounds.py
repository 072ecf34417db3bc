"""Every setting has a declared type and range, next to its config (``SETTINGS``): the config refuses a value out
of it when it is made (from its file or a run's override alike), naming the file, the key, the value and what is
allowed; the forms' fields carry the same bounds, so Airflow refuses the same values in a form or a ``conf``."""

from __future__ import annotations

import math

import pytest

from include.mlops.core.config import ScheduleConfig, YamlConfig, check_value, describe
from include.mlops.deploy.config import DeployConfig
from include.mlops.evaluate.config import GateConfig
from include.mlops.monitor.config import MonitorConfig
from include.mlops.train import params

CONFIGS = (DeployConfig, GateConfig, MonitorConfig, ScheduleConfig)
SCALARS = {"null", "boolean", "integer", "number", "string"}


def stage(share, min_hours=0, min_requests=0, **other) -> dict:
    return {"share": share, "min_hours": min_hours, "min_requests": min_requests, **other}


LIMITS = {"latency_p99_ms": 500, "error_rate": 0.01, "memory_mb": 4096, "score_agreement": 0.99, "min_rescored": 100}


def _kinds(schema: dict) -> set[str]:
    t = schema["type"]
    return set([t] if isinstance(t, str) else t)


def _scalar(schema: dict) -> bool:
    return _kinds(schema) <= SCALARS


def _declarations():
    for cls in CONFIGS:
        for k, s in cls.SETTINGS.items():
            yield f"{cls.__name__}.{k}", s
    for section, settings in params.SETTINGS.items():
        for k, s in settings.items():
            yield f"params.{section}.{k}", s


def test_the_shipped_files_hold_every_declared_setting_within_its_range():
    for cls in CONFIGS:
        cfg = cls()
        assert set(cfg.as_dict()) == set(cls.SETTINGS), cls.__name__
    p = params.load()
    assert {s: set(v) for s, v in p.items()} == {s: set(v) for s, v in params.SETTINGS.items()}


@pytest.mark.parametrize(
    "cls, key, bad, good",
    [
        (DeployConfig, "min_labelled", [0, -1, 2.5, True, "600", None], [1, 6000]),
        (DeployConfig, "max_labelled", [0, 600.0, False], [600, 100000]),
        (DeployConfig, "max_logloss_increase", [1.01, -1.5, math.nan, math.inf, True], [-1, 0, 0.005, 1]),
        (DeployConfig, "bootstrap", [-1, 100001, 3.5, True], [0, 1, 100000]),
        # a stage's share of flights (5: "500 %"), its hours and requests; a stage names each and nothing else
        (
            DeployConfig,
            "stages",
            [
                [stage(5)],
                [stage(0.0), stage(-1)],
                [stage(1.0, min_hours=-1)],
                [stage(1.0, min_hours=24 * 30 + 1)],
                [stage(1.0, min_requests=2.5)],
                [stage(True)],
                [{"share": 1.0, "min_hours": 0}],
                [stage(1.0, max_hours=3)],
                [1.0],
                "shadow",
                {"share": 1.0},
                None,
            ],
            [[stage(1.0)], [stage(0.0, 0, 200), stage(0.05, 1, 200), stage(1.0, 24 * 30, 500)]],
        ),
        (
            DeployConfig,
            "limits",
            [
                LIMITS | {"error_rate": 2},
                LIMITS | {"latency_p99_ms": 0},
                LIMITS | {"score_agreement": -0.1},
                LIMITS | {"min_rescored": 0},
                {k: v for k, v in LIMITS.items() if k != "memory_mb"},
                LIMITS | {"cpu": 1},
                [],
            ],
            [LIMITS, LIMITS | {"error_rate": 0, "score_agreement": 1}],
        ),
        (GateConfig, "min_auc", [1.01, -0.01, True, "0.6"], [0, 0.6, 1]),
        (GateConfig, "max_auc_drop", [1.5, -0.1], [0, 1]),
        (GateConfig, "max_ece", [2, -1], [0, 1.0]),
        (GateConfig, "min_slice_rows", [0, 2.0, True], [1, 500]),
        (GateConfig, "max_slice_auc_drop", [1.01], [0.05]),
        (GateConfig, "slice_columns", ["origin", [1], {"origin": 1}], [[], ["origin"]]),
        (MonitorConfig, "consecutive_days", [0, -1, 367, 2.0, True], [1, 366]),
        (MonitorConfig, "window_days", [-3, 0, 367, True, "14"], [1, 7, 366]),
        (MonitorConfig, "cooldown_days", [-1, 367, False], [0, 14, 366]),
        (MonitorConfig, "min_drifted_features", [0, True], [1, 2]),
        (MonitorConfig, "min_labelled", [0, 1.5], [1, 100000]),
        (MonitorConfig, "max_auc_drop", [-0.01, 1.01], [0, 1]),
        (MonitorConfig, "missing_increase", [-0.1, True], [0, 0.1, 2.0]),  # above 1: never
        (MonitorConfig, "label_rate_change", [1.5, -0.1, "0.1"], [0, 0.1, 1]),
        (MonitorConfig, "ignore", ["month", [3]], [[], ["month"]]),
        (MonitorConfig, "numeric", [{"ks": 1.5}, {"ks": -0.1}, {"psi": -1}, {"kl": True}, [0.5]], [{"ks": None}]),
        (MonitorConfig, "numeric", [{"mean_shift": -1}], [{"mean_shift": 3.0}]),  # a new statistic: its section's
        (MonitorConfig, "categorical", [{"js": 1.2}, {"psi": "0.25"}], [{"js": 1, "psi": 4.0, "kl": None}]),
        (MonitorConfig, "prediction", [{"ks": 2}], [{"psi": 0.25, "ks": None}]),
        (MonitorConfig, "features", [{"temp": {"psi": -1}}, {"temp": 1.0}], [{}, {"temp": {"psi": 1.0, "ks": 0.5}}]),
        (ScheduleConfig, "replay_poke_s", [0, -1, True], [0.5, 15]),
        (ScheduleConfig, "start_date", ["2013-13-01", "yesterday", 20130101], ["2013-01-01"]),
        (ScheduleConfig, "catchup", [1, "true"], [True, False]),
    ],
)
def test_a_setting_out_of_its_range_is_refused_naming_file_key_value_and_range(cls, key, bad, good):
    for value in bad:
        if value is None:  # an override of None keeps the file's value: the file's own None is the case
            values = cls().as_dict() | {key: None}
            with pytest.raises(ValueError) as err:
                cls(values)
        else:
            with pytest.raises(ValueError) as err:
                cls(**{key: value})
        msg = str(err.value)
        assert cls.FILE.name in msg and f"{key}" in msg and "must be" in msg, msg
        if not isinstance(value, (dict, list)):
            assert f"= {value!r}" in msg, msg
    for value in good:
        assert getattr(cls(**{key: value}), key) == value


def test_the_message_says_the_allowed_range_and_that_the_run_overrode_it():
    with pytest.raises(ValueError) as err:
        DeployConfig(min_labelled=0)
    assert str(err.value) == f"{DeployConfig.FILE}, overridden: min_labelled = 0: must be an integer >= 1"
    with pytest.raises(ValueError) as err:  # a nested value is named by its place: the list's item, its key
        DeployConfig(stages=[stage(5)])
    assert str(err.value) == f"{DeployConfig.FILE}, overridden: stages[0].share = 5: must be a number >= 0 and <= 1"
    with pytest.raises(ValueError) as err:
        MonitorConfig(consecutive_days=True)
    assert "consecutive_days = True: must be an integer >= 1 and <= 366" in str(err.value)
    with pytest.raises(ValueError, match=r"numeric\.ks = 1\.5: must be null or a number >= 0 and <= 1"):
        MonitorConfig(numeric={"ks": 1.5})


def test_the_file_itself_is_checked(tmp_path):
    f = tmp_path / "deploy.yaml"
    text = DeployConfig.FILE.read_text()
    assert text.count("- {share: 0.0,") == 1  # the shipped ramp's first stage, the shadow
    f.write_text(text.replace("- {share: 0.0,", "- {share: 5,"))
    with pytest.raises(ValueError) as err:
        DeployConfig.load(f)
    assert str(err.value) == f"{f}: stages[0].share = 5: must be a number >= 0 and <= 1"
    f.write_text(text.replace("  min_rescored: 100", "  min_rescored: 0"))
    with pytest.raises(ValueError) as err:
        DeployConfig.load(f)
    assert str(err.value) == f"{f}: limits.min_rescored = 0: must be an integer >= 1"
    f.write_text(text.replace("min_labelled: 600 ", "min_labelled: 0   "))
    with pytest.raises(ValueError) as err:
        DeployConfig.load(f)
    assert str(err.value) == f"{f}: min_labelled = 0: must be an integer >= 1"
    # a key left out of the file is named: the code holds no defaults to fall back on
    f.write_text("\n".join(ln for ln in DeployConfig.FILE.read_text().splitlines() if not ln.startswith("bootstrap")))
    with pytest.raises(ValueError, match=r"deploy.yaml: settings \['bootstrap'\] are missing"):
        DeployConfig.load(f)
    # a key of the file without a declaration (no type, no range) is refused, naming where to declare it
    f.write_text(DeployConfig.FILE.read_text() + "canary_hours: 3\n")
    with pytest.raises(ValueError, match=r"\['canary_hours'\] have no declaration .* in DeployConfig.SETTINGS"):
        DeployConfig.load(f)
    m = tmp_path / "monitoring.yaml"
    m.write_text(MonitorConfig.FILE.read_text().replace("  timeout_s: 10", "  timeout: 10"))
    with pytest.raises(ValueError, match=r"service = .*must be a mapping with the keys \['timeout_s'\] \(missing\)"):
        MonitorConfig.load(m)


def test_a_canary_needs_no_more_evidence_than_it_waits_for(tmp_path):
    assert DeployConfig(min_labelled=600, max_labelled=600).min_labelled == 600
    with pytest.raises(ValueError, match="min_labelled = 601 and max_labelled = 600"):
        DeployConfig(min_labelled=601, max_labelled=600)
    with pytest.raises(ValueError, match="overridden: min_labelled = 6001 and max_labelled = 6000"):
        DeployConfig(min_labelled=6001)  # the file's max is 6000
    with pytest.raises(ValueError, match="overridden: min_labelled = 600 and max_labelled = 599"):
        DeployConfig(max_labelled=599)  # the file's min is 600
    f = tmp_path / "deploy.yaml"
    f.write_text(DeployConfig.FILE.read_text().replace("max_labelled: 6000", "max_labelled: 60  "))
    with pytest.raises(ValueError, match=r"deploy.yaml: min_labelled = 600 and max_labelled = 60: .*<= max_labelled"):
        DeployConfig.load(f)


def test_the_ramp_rises_to_every_flight(tmp_path):
    """The stages' shares rise, and the last serves every flight (promotion happens there); a ramp of one stage
    (1.0: no shadow, no partial share) is a ramp."""
    text, f = DeployConfig.FILE.read_text(), tmp_path / "deploy.yaml"
    assert text.count("- {share: 0.05,") == text.count("- {share: 1.0,") == 1
    f.write_text(text.replace("- {share: 0.05,", "- {share: 0.0, "))
    with pytest.raises(ValueError) as err:
        DeployConfig.load(f)
    assert str(err.value) == f"{f}: stages[1].share = 0.0 after stages[0].share = 0.0: the shares must rise"
    f.write_text(text.replace("- {share: 1.0,", "- {share: 0.9,"))
    with pytest.raises(ValueError, match=r"deploy.yaml: stages\[4\].share = 0.9: the last stage must serve every"):
        DeployConfig.load(f)
    f.write_text(
        "\n".join(ln for ln in text.splitlines() if not ln.startswith("  - {share")).replace("stages:", "stages: []")
    )
    with pytest.raises(ValueError, match=r"deploy.yaml: stages = \[\]: the ramp needs at least one stage"):
        DeployConfig.load(f)
    with pytest.raises(ValueError, match=r"overridden: stages\[2\].share = 0.5 after stages\[1\].share = 0.5"):
        DeployConfig(stages=[stage(0.0), stage(0.5), stage(0.5), stage(1.0)])
    assert DeployConfig(stages=[stage(1.0)]).stages == [stage(1.0)]


def test_replace_checks_again():
    cfg = MonitorConfig()
    with pytest.raises(ValueError, match="window_days = 0"):
        cfg.replace(window_days=0)


@pytest.mark.parametrize(
    "run, message",
    [
        ({"workers": 0}, "workers = 0: must be an integer >= 1 and <= 64"),
        ({"workers": 65}, "workers = 65: must be an integer >= 1 and <= 64"),
        ({"workers": True}, "workers = True: must be an integer"),
        ({"workers": "2"}, "workers = '2': must be an integer"),
        ({"window_days": 2}, "window_days = 2: must be an integer >= 3 and <= 366"),
        ({"min_days": None}, "min_days = None: must be an integer"),
        ({"num_boost_round": 9}, "num_boost_round = 9"),
        ({"timeout_minutes": 0}, "timeout_minutes = 0"),
        ({"threads_per_worker": 0}, "threads_per_worker = 0"),
        ({"test_share": 0.5}, "test_share = 0.5: must be a number >= 0.05 and <= 0.4"),
        ({"validation_share": 0}, "validation_share = 0: must be a number >= 0.05"),
        ({"learning_rate": 0}, "learning_rate = 0: must be a number > 0 and <= 1"),
        ({"learning_rate": 1.5}, "learning_rate = 1.5"),
        ({"num_leaves": 1}, "num_leaves = 1: must be an integer >= 2 and <= 4096"),
        ({"min_data_in_leaf": 0}, "min_data_in_leaf = 0"),
        ({"feature_fraction": 0.0}, "feature_fraction = 0.0: must be a number > 0 and <= 1"),
        ({"bagging_fraction": 1.01}, "bagging_fraction = 1.01"),
        ({"lambda_l2": -0.1}, "lambda_l2 = -0.1: must be a number >= 0"),
    ],
)
def test_a_training_run_out_of_range_is_refused(run, message):
    with pytest.raises(ValueError) as err:
        params.resolve(run)
    assert message in str(err.value) and "train_model's parameters" in str(err.value)


def test_a_training_run_within_range_takes_its_values_and_the_file_the_rest():
    edges = {"workers": 64, "window_days": 3, "min_days": 366, "learning_rate": 1, "feature_fraction": 1e-9}
    got = params.resolve(edges | {"reason": "manual", "gate_min_auc": None})  # other params are not its business
    assert {k: got["train"].get(k, got["lgbm"].get(k)) for k in edges} == edges
    assert got["train"]["num_boost_round"] == params.load()["train"]["num_boost_round"]


def test_params_yaml_and_its_environment_override_are_checked(tmp_path, monkeypatch):
    f = tmp_path / "params.yaml"
    f.write_text(params.path().read_text().replace("num_leaves: 63", "num_leaves: 1"))
    with pytest.raises(ValueError, match=r"params.yaml \(lgbm:\): num_leaves = 1: must be an integer >= 2"):
        params.load(f)
    f.write_text(params.path().read_text().replace("  lambda_l2: 1.0", "  lambda_l2: 1.0\n  max_depth: 8"))
    with pytest.raises(ValueError, match=r"\['max_depth'\] have no declaration .* in params.SETTINGS\['lgbm'\]"):
        params.load(f)
    monkeypatch.setenv("MLOPS_TRAIN_MIN_DAYS", "1")
    with pytest.raises(ValueError, match="MLOPS_TRAIN_MIN_DAYS, overridden: min_days = 1: must be an integer >= 3"):
        params.load()
    monkeypatch.setenv("MLOPS_TRAIN_MIN_DAYS", "4")
    assert params.load()["train"]["min_days"] == 4


def test_every_declaration_says_what_it_allows():
    for name, schema in _declarations():
        assert "type" in schema, name
        words = describe(schema)
        assert words and "None" not in words, (name, words)
        if {"integer", "number"} & _kinds(schema):
            assert any(k in schema for k in ("minimum", "exclusiveMinimum")), f"{name}: a number with no lower bound"


# --- the forms carry the declarations (Airflow's Params; imported only here) ----------------------------------


NUMBERS = [-1e6, -3, -1, -0.5, 0, 0.0, 1e-9, 0.2, 0.5, 1, 1.0, 1.5, 2, 3, 5, 64, 65, 366, 367, 4096, 5000, 1e5, 1e7]
SAMPLES = [None, True, False, *NUMBERS, 100000, 100001, "0.2", "2013-01-01", [], {}]


def _agree(schema: dict, name: str) -> None:
    """The config's check and Airflow's (jsonschema through Param.resolve) give the same verdict on each sample."""
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    for v in SAMPLES:
        try:
            check_value(schema, v, name)
            ours = True
        except ValueError:
            ours = False
        try:
            Param(**schema).resolve(v)
            theirs = True
        except ParamValidationError:
            theirs = False
        if isinstance(v, float) and v.is_integer() and "integer" in _kinds(schema) and "number" not in _kinds(schema):
            assert not ours  # 1.0 is an integer to JSON schema, never to a setting: the config is the stricter
            continue
        assert ours == theirs, (name, v, ours, theirs)


def test_the_config_and_airflow_agree_on_every_declaration():
    for name, schema in _declarations():
        _agree(schema, name)


def test_the_override_fields_carry_the_bounds():
    from airflow.sdk.exceptions import ParamValidationError

    from mlops_airflow.blocks.forms import overrides_form

    form = overrides_form(DeployConfig)
    # the scalar settings only: the ramp (stages) and its limits are the file's
    assert set(form) == {
        "min_labelled",
        "min_days",
        "max_labelled",
        "max_logloss_increase",
        "bootstrap",
        "min_slice_labelled",
        "max_slice_logloss_increase",
    }
    labelled = form["min_labelled"]
    assert labelled.schema["type"] == ["null", "integer"] and labelled.schema["minimum"] == 1
    assert "Allowed: an integer >= 1" in labelled.description
    for bad in (0, -1, 2.5, "600", True):
        with pytest.raises(ParamValidationError):
            labelled.resolve(bad)
    assert labelled.resolve(600) == 600 and labelled.resolve(None) is None  # empty: deploy.yaml's value
    for cls, prefix in ((DeployConfig, ""), (MonitorConfig, ""), (GateConfig, "gate_")):
        form = overrides_form(cls, prefix=prefix)
        scalar = {k for k, s in cls.SETTINGS.items() if _scalar(s)}
        assert set(form) == {prefix + k for k in scalar}
        for k in scalar:
            field = {x: y for x, y in form[prefix + k].schema.items() if x not in ("title", "type")}
            assert field == {x: y for x, y in cls.SETTINGS[k].items() if x != "type"}, k
            _agree({**cls.SETTINGS[k]}, k)
    monitor = overrides_form(MonitorConfig)
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ParamValidationError):
            monitor["consecutive_days"].resolve(bad)
        with pytest.raises(ParamValidationError):
            monitor["window_days"].resolve(bad)


def test_the_training_fields_carry_the_bounds():
    from airflow.sdk.exceptions import ParamValidationError

    from mlops_airflow.blocks.forms import values_form

    values = params.load()
    for section in params.SECTIONS:
        form = values_form(values[section], {}, params.SETTINGS[section])
        scalars = {k for k, v in values[section].items() if not isinstance(v, dict)}  # tune.space is no field
        assert set(form) == scalars
        for k, field in form.items():
            assert field.value == values[section][k]
            assert {x: y for x, y in field.schema.items() if x != "title"} == params.SETTINGS[section][k]
    workers = values_form(values["train"], {}, params.SETTINGS["train"])["workers"]
    for bad in (0, 65, True, "2"):
        with pytest.raises(ParamValidationError):
            workers.resolve(bad)


def test_a_config_class_without_declarations_refuses_its_file(tmp_path):
    class Bare(YamlConfig):
        FILE = tmp_path / "bare.yaml"

    Bare.FILE.write_text("x: 1\n")
    with pytest.raises(ValueError, match=r"\['x'\] have no declaration .* in Bare.SETTINGS"):
        Bare()
