"""Test the validity of all DAGs. **USED BY DEV PARSE COMMAND** (`astro dev parse`, `astro deploy --parse`) and
by `make test` (pytest.ini's testpaths).

The Astro CLI's default DAG-integrity test (`astro dev init`, Airflow 3 template), adapted to Airflow 3.3:
``DagBag`` comes from ``airflow.dag_processing.dagbag`` and takes no ``include_examples`` (the DAG folder is
``[core] dags_folder``; this project's examples are off); Variables, connections and environment variables are
stubbed only while the DAG files are parsed, not for the rest of the pytest session; the paths and the
exceptions file are taken relative to the project root (this file's parent's parent: /usr/local/airflow in the
image, the checkout on a laptop) instead of AIRFLOW_HOME and the working directory; no metadata database is
created (``initdb``): parsing an Airflow 3 DAG file does not read it. The check is the CLI's: every DAG file
imports without an error, unless it is listed in ``.astro/dag_integrity_exceptions.txt``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXCEPTIONS_FILE = Path(__file__).resolve().parent / "dag_integrity_exceptions.txt"
NO_IMPORT_ERRORS = "No import errors"
_NO_DEFAULT = object()  # allow falsey defaults


# =========== MONKEYPATCH BaseHook.get_connection() ===========
def basehook_get_connection_monkeypatch(key: str, *args, **kwargs):
    from airflow.sdk import Connection

    print(f"Attempted to fetch connection during parse returning an empty Connection object for {key}")
    return Connection(conn_id=key)


# =========== MONKEYPATCH OS.GETENV() ===========
def os_getenv_monkeypatch(key: str, *args, **kwargs):
    default = None
    if args:
        default = args[0]  # os.getenv should get at most 1 arg after the key
    if kwargs:
        default = kwargs.get("default", None)  # and sometimes kwarg if people are using the sig

    env_value = os.environ.get(key, None)

    if env_value:
        return env_value  # if the env_value is set, return it
    if key in ("JENKINS_HOME", "PYTEST_THEME") and default is None:  # the CLI's exceptions to mocking
        return None
    if default:
        return default  # otherwise return whatever default has been passed
    return f"MOCKED_{key.upper()}_VALUE"  # if absolutely nothing has been passed - return the mocked value


# =========== MONKEYPATCH VARIABLE.GET() ===========
class magic_dict(dict):  # noqa: N801 (the CLI's name)
    def __getitem__(self, key):
        return {}.get(key, "MOCKED_KEY_VALUE")


def variable_get_monkeypatch(key: str, default=_NO_DEFAULT, deserialize_json=False, **kwargs):
    print(f"Attempted to get Variable value during parse, returning a mocked value for {key}")
    default = kwargs.get("default_var", default)  # the Airflow 2 name of the argument
    if default is not _NO_DEFAULT and type(default).__name__ != "ArgNotSet":
        return default
    if deserialize_json:
        return magic_dict()
    return "NON_DEFAULT_MOCKED_VARIABLE_VALUE"


@contextmanager
def parse_time_stubs():
    """The CLI's patches, for the duration of the parse only (the CLI applies them to the whole process, which
    would change every other test in the same pytest session)."""
    from airflow.sdk import BaseHook, Variable

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BaseHook, "get_connection", staticmethod(basehook_get_connection_monkeypatch))
        mp.setattr(Variable, "get", staticmethod(variable_get_monkeypatch))
        mp.setattr(os, "getenv", os_getenv_monkeypatch)
        yield


@contextmanager
def suppress_logging(namespace):
    """
    Suppress logging within a specific namespace to keep tests "clean" during build
    """
    logger = logging.getLogger(namespace)
    old_value = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = old_value


def strip_path_prefix(path) -> str:
    return os.path.relpath(path, PROJECT_ROOT)


def get_import_errors(dag_folder=None):
    """
    Generate a tuple for import errors in the dag bag, and include DAGs without errors.
    (``dag_folder``: another folder than ``[core] dags_folder``.)
    """
    from airflow.dag_processing.dagbag import DagBag

    with suppress_logging("airflow"), parse_time_stubs():
        dag_bag = DagBag(dag_folder=dag_folder)

    # Initialize an empty list to store the tuples
    result = []

    # Iterate over the items in import_errors
    for k, v in dag_bag.import_errors.items():
        result.append((strip_path_prefix(k), v.strip()))

    # The files whose DAGs loaded (the CLI's default iterates over the DAG ids here, not their files)
    for file_path in sorted({dag.fileloc for dag in dag_bag.dags.values()}):
        # Check if the file_path is not in import_errors, meaning no errors
        if file_path not in dag_bag.import_errors:
            result.append((strip_path_prefix(file_path), NO_IMPORT_ERRORS))

    return result


def get_exceptions() -> list[str]:
    if not EXCEPTIONS_FILE.exists():
        return []
    lines = (line.strip() for line in EXCEPTIONS_FILE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


IMPORT_RESULTS = get_import_errors()  # parsed once (the CLI's default parses the DAG folder twice)


@pytest.mark.parametrize("rel_path, rv", IMPORT_RESULTS, ids=[x[0] for x in IMPORT_RESULTS])
def test_file_imports(rel_path, rv):
    """Test for import errors on a file"""
    exceptions = get_exceptions()
    print(f"Exceptions: {exceptions}")
    if (rv != NO_IMPORT_ERRORS) and rel_path not in exceptions:
        # If rv is not "No import errors," consider it a failed test
        raise Exception(f"{rel_path} failed to import with message \n {rv}")
    else:
        # If rv is "No import errors," consider it a passed test
        print(f"{rel_path} passed the import test")
