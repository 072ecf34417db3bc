"""The layout's rules, enforced: nothing in include/mlops imports Airflow; a lifecycle stage imports only the core
and the stages before it (ingest, train, evaluate, deploy, serve, monitor); the lake's places are named only in
core.layout."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "mlops"
STAGES = ["core", "ingest", "train", "evaluate", "deploy", "serve", "monitor"]
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = here.rsplit(".", 1)[0] if path.name != "__init__.py" else here.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["include", "mlops"] and parts[2] in STAGES else None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_stage_imports_only_the_core_and_earlier_stages(path):
    mine = path.relative_to(PACKAGE).parts[0]
    if mine not in STAGES:
        return  # include/mlops/__init__.py
    allowed = set(STAGES[: STAGES.index(mine) + 1]) | {"core"}
    if mine == "core":
        allowed = {"core"}
    wrong = sorted({m for m in imports(path) if stage_of(m) and stage_of(m) not in allowed})
    assert not wrong, f"{mine}/{path.name} imports {wrong}: a stage imports only {sorted(allowed)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_in_the_platform_imports_airflow(path):
    airflow = [m for m in imports(path) if m == "airflow" or m.startswith("airflow.")]
    assert not airflow, f"{path.relative_to(ROOT)} imports {airflow}: Airflow belongs to plugins/"


def test_the_rule_checker_sees_a_forbidden_import(tmp_path):
    """The checker itself: a core module importing a stage is caught."""
    bad = PACKAGE / "core" / "_probe_forbidden.py"
    bad.write_text("from ..monitor import drift\n")
    try:
        assert stage_of([m for m in imports(bad) if "monitor" in m][0]) == "monitor"
    finally:
        bad.unlink()


LAKE_PLACES = re.compile(
    r"""["'](landing|staging|curated|quarantine|predictions|reports|deployments|training)/"""
    r"""|^["']((rollout|latest|triggers|decision|registered|report|spec|profile|job)\.json"""
    r"""|report\.html|part-\d+\.parquet|holdout\.parquet|model\.txt)$"""
)


# the Horovod launcher and its ranks name the files of their own local job folder, not the lake's
LOCAL_FILES = {"layout.py", "launch.py", "distributed.py"}


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if p.name not in LOCAL_FILES]
    + sorted((ROOT / "plugins").rglob("*.py"))
    + [ROOT / "scripts" / "demo.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_lake_is_named_only_in_the_layout(path):
    """Every place in the lake is named by core.layout; no module writes a lake path of its own."""
    code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    # docstrings describe the layout: only code strings count
    tree = ast.parse(code)
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    literals = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]
    found = [s for s in literals if LAKE_PLACES.search(f'"{s}')]
    assert not found, f"{path.relative_to(ROOT)} names lake places itself: {found[:5]} (ask core.layout)"
