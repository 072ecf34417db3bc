"""How the registry reads MLflow's errors (``core/registry.py``), without a tracking store: only "this model or
this alias does not exist" is an absence; the same error codes about anything else, and every other error, reach
the caller, so that no decision (promote without a canary, gate without a champion, skip monitoring) is taken on
them. The messages are MLflow's own (``mlflow/store/model_registry/{sqlalchemy,file}_store.py``; a tracking server
relays them prefixed by the code, as ``RestException`` does); ``tests/faults/test_fault_registry.py`` checks the
real SQL store and an unreachable server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from include.mlops.core import registry

MODEL = "flight_delay_errors"


@pytest.fixture(autouse=True)
def model_name(monkeypatch):
    monkeypatch.setenv("MLOPS_MODEL_NAME", MODEL)


def missing_model(name: str = MODEL) -> MlflowException:
    return MlflowException(f"Registered Model with name={name} not found", RESOURCE_DOES_NOT_EXIST)


def missing_alias(alias: str = "champion") -> MlflowException:
    return MlflowException(f"Registered model alias {alias} not found.", INVALID_PARAMETER_VALUE)


ABSENT = {
    "no such alias": missing_alias(),
    "no such alias, through a tracking server": RestException(
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias champion not found."}
    ),
    "no version registered yet (no model)": missing_model(),
    "no model, through a tracking server": RestException(
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Registered Model with name={MODEL} not found"}
    ),
}
# the "not found" codes, about something that is not this model or one of its aliases; and plain errors
NOT_ABSENT = {
    "a missing run": MlflowException("Run with id=3f2a9c not found", RESOURCE_DOES_NOT_EXIST),
    "a missing experiment": MlflowException("No Experiment with id=7 exists", RESOURCE_DOES_NOT_EXIST),
    "a missing model version": MlflowException(
        f"Model Version (name={MODEL}, version=4) not found", RESOURCE_DOES_NOT_EXIST
    ),
    "another registered model": missing_model(MODEL + "_old"),
    "a missing run, through a tracking server": RestException(
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'abc' not found"}
    ),
    "an invalid parameter that is not a missing alias": MlflowException(
        "Invalid value 'x y' for parameter 'alias': not found in the allowed pattern", INVALID_PARAMETER_VALUE
    ),
    "an invalid alias name": MlflowException(
        "Registered model alias name 'latest' is reserved.", INVALID_PARAMETER_VALUE
    ),
    "a missing alias said with another code": MlflowException(
        "Registered model alias champion not found.", TEMPORARILY_UNAVAILABLE
    ),
    "a server that is down": MlflowException(
        "API request to http://mlflow:5000/api/2.0/mlflow/registered-models/alias failed: 503 Service Unavailable",
        TEMPORARILY_UNAVAILABLE,
    ),
    "a connection refused": ConnectionRefusedError(111, "Connection refused"),
    "a missing file, not an MLflow answer": FileNotFoundError("Registered Model with name=x not found"),
}


@pytest.mark.parametrize("exc", ABSENT.values(), ids=ABSENT.keys())
def test_a_missing_model_or_alias_is_absent(exc):
    assert registry.is_absent(exc)


@pytest.mark.parametrize("exc", NOT_ABSENT.values(), ids=NOT_ABSENT.keys())
def test_a_not_found_about_anything_else_is_not_absent(exc):
    """Kills: RESOURCE_DOES_NOT_EXIST read as "no alias" whatever it is about; any INVALID_PARAMETER_VALUE that
    mentions an alias or "not found" read as a missing alias."""
    assert not registry.is_absent(exc)


class Client:
    """What the registry functions call on ``MlflowClient``: each raises ``exc`` when one is given."""

    def __init__(self, exc: BaseException | None = None, found=()):
        self.exc, self.found, self.deleted = exc, list(found), []

    def _answer(self, value):
        if self.exc is not None:
            raise self.exc
        return value

    def get_model_version_by_alias(self, name, alias):
        assert (name, alias) == (MODEL, "champion")
        return self._answer(SimpleNamespace(version=4, run_id="run-4"))

    def search_model_versions(self, filter_string):
        assert filter_string == f"name='{MODEL}'"
        return self._answer(self.found)

    def delete_registered_model_alias(self, name, alias):
        self._answer(None)
        self.deleted.append((name, alias))


@pytest.fixture
def client(monkeypatch):
    """``client(exc)``: the registry's MLflow client from now on (no tracking store is touched)."""

    def use(exc: BaseException | None = None, found=()) -> Client:
        c = Client(exc, found)
        c.settings = []

        def _mlflow(settings=None):
            c.settings.append(settings)
            return SimpleNamespace(MlflowClient=lambda: c)

        monkeypatch.setattr(registry, "_mlflow", _mlflow)
        return c

    return use


def test_the_registry_answers_none_only_for_an_absence(client):
    client()
    assert registry.alias_version("champion") == {"version": "4", "run_id": "run-4"}
    for exc in ABSENT.values():
        client(exc)
        assert registry.alias_version("champion") is None
        assert registry.versions() == []
        registry.delete_alias("challenger")  # already absent: done


@pytest.mark.parametrize("exc", NOT_ABSENT.values(), ids=NOT_ABSENT.keys())
def test_any_other_error_reaches_the_caller(client, exc):
    """Kills: an error read as "no alias" / "no versions" / "already removed" by ``alias_version``, ``versions``
    or ``delete_alias``."""
    c = client(exc)
    for lookup in (
        lambda: registry.alias_version("champion"),
        registry.versions,
        lambda: registry.delete_alias("challenger"),
    ):
        with pytest.raises(type(exc)) as err:
            lookup()
        assert err.value is exc
    assert not c.deleted


def test_versions_are_listed_in_numeric_order(client):
    found = [
        SimpleNamespace(version=10, run_id="r10", aliases=["challenger"], status="READY"),
        SimpleNamespace(version="9", run_id="r9", aliases=None, status="READY"),
        SimpleNamespace(version=2, run_id="r2", aliases=["champion"], status="FAILED_REGISTRATION"),
    ]
    client(found=found)
    assert registry.versions() == [
        {"version": "2", "run_id": "r2", "aliases": ["champion"], "status": "FAILED_REGISTRATION"},
        {"version": "9", "run_id": "r9", "aliases": [], "status": "READY"},
        {"version": "10", "run_id": "r10", "aliases": ["challenger"], "status": "READY"},
    ]


def test_removing_an_alias_names_the_model_and_the_alias(client):
    c = client()
    registry.delete_alias("challenger")
    assert c.deleted == [(MODEL, "challenger")]


def test_the_settings_given_reach_the_client(client):
    c, settings = client(), object()
    registry.alias_version("champion", settings)
    registry.versions(settings)
    registry.delete_alias("challenger", settings)
    assert c.settings == [settings] * 3
