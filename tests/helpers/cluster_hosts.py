"""The test hosts' script (``scripts/cluster/cluster.py``) as a module for the tests in ``tests/cluster/``, and the
mark they share: network namespaces need root and iproute2."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("cluster_script", ROOT / "scripts" / "cluster" / "cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cluster = _load()
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)
