"""The layout's rules, enforced: nothing in include/mlops imports Airflow; a lifecycle stage imports only the core
and the stages before it (ingest, train, evaluate, deploy, serve, monitor); the lake's places are named only in
core.layout, never spelt as path segments; plugins/ write neither the registry nor the lake themselves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from include.mlops.core.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "mlops"
STAGES = ["core", "kinds", "ingest", "train", "evaluate", "deploy", "serve", "monitor"]
# the upstream simulator drives ingest and serve from outside, and the DVC pipeline's stages (repro) run the stages'
# own functions on a snapshot: each may import the core and every stage, and no stage imports them (a deployment
# runs neither)
OUTSIDE = ["simulate", "repro"]
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
    return parts[2] if len(parts) > 2 and parts[:2] == ["include", "mlops"] and parts[2] in STAGES + OUTSIDE else None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_stage_imports_only_the_core_and_earlier_stages(path):
    mine = path.relative_to(PACKAGE).parts[0]
    if mine not in STAGES + OUTSIDE:
        return  # include/mlops/__init__.py
    allowed = set(STAGES[: STAGES.index(mine) + 1] if mine in STAGES else STAGES + OUTSIDE) | {"core"}
    if mine == "core":
        allowed = {"core"}
    wrong = sorted({m for m in imports(path) if stage_of(m) and stage_of(m) not in allowed})
    assert not wrong, f"{mine}/{path.name} imports {wrong}: a stage imports only {sorted(allowed)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_stage_after_training_imports_it(path):
    """The gate, the canary, the service and monitoring load and score models through the model interface
    (``kinds``) and read the model frame from the core: none of them depends on how a model is trained."""
    mine = path.relative_to(PACKAGE).parts[0]
    if mine in STAGES and STAGES.index(mine) > STAGES.index("train"):
        wrong = sorted({m for m in imports(path) if stage_of(m) == "train"})
        assert not wrong, f"{mine}/{path.name} imports {wrong}: ask kinds (models) or core.frame (the model frame)"


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


def test_the_rule_checker_sees_a_stage_importing_the_simulator():
    """No stage imports simulate/ (a real deployment runs every stage and never the simulator)."""
    bad = PACKAGE / "ingest" / "_probe_simulator.py"
    bad.write_text("from ..simulate import upstream\n")
    try:
        with pytest.raises(AssertionError, match="simulate"):
            test_a_stage_imports_only_the_core_and_earlier_stages(bad)
    finally:
        bad.unlink()


LAKE_PLACES = re.compile(
    r"""["'](landing|staging|curated|quarantine|predictions|reports|deployments|training)/"""
    r"""|^["']((rollout|latest|triggers|decision|registered|report|spec|profile|job)\.json"""
    r"""|report\.html|part-\d+\.parquet|holdout\.parquet|model\.txt)$"""
)


# the Horovod launcher and its ranks name the files of their own local job folder, not the lake's
LOCAL_FILES = {"layout.py", "launch.py", "distributed.py"}


PLUGINS = sorted((ROOT / "plugins").rglob("*.py"))
NAMING_THE_LAKE = [p for p in MODULES if p.name not in LOCAL_FILES] + PLUGINS + [ROOT / "scripts" / "demo.py"]


@pytest.mark.parametrize("path", NAMING_THE_LAKE, ids=lambda p: str(p.relative_to(ROOT)))
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


# every public method of Lake takes places in the lake (``copy``: two) as its path arguments
LAKE_METHODS = {name for name, f in vars(Lake).items() if callable(f) and not name.startswith("_")}
LAKE_WRITERS = {
    "write_bytes",
    "write_json",
    "write_parquet",
    "replace_partition",
    "touch",
    "rm",
    "rmdir_if_empty",
    "copy",
    "create",
}
NOT_LAKES = {"os", "os.path", "shutil"}  # the same method names on the local filesystem


def _lake_call(node: ast.AST, methods: set[str]) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in methods
        and ast.unparse(node.func.value) not in NOT_LAKES
    )


def spelt_segments(tree: ast.AST) -> list[str]:
    """Lake calls given a path spelt in code: a string or an f-string as a path argument, alone, in a tuple or a
    list, or joined (``lake.path("deployments", "rollout.json")``, ``lake.uri("reports")``,
    ``lake.write_json(d, layout.deployment_reports(), f"v{v}.json")``). A literal inside a call (``layout.landing(
    name, "2013-01-01")``) is that call's argument, not a path."""
    found = []
    for node in ast.walk(tree):
        if not _lake_call(node, LAKE_METHODS):
            continue
        args = list(node.args)
        while args:
            arg = args.pop()
            if isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
                break
            if isinstance(arg, (ast.Tuple, ast.List)):
                args += arg.elts
            elif isinstance(arg, ast.Starred):
                args.append(arg.value)
            elif isinstance(arg, ast.BinOp):
                args += [arg.left, arg.right]
    return found


@pytest.mark.parametrize("path", NAMING_THE_LAKE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_lake_path_is_spelt_in_segments(path):
    """A lake place passed as separate segments is a lake path all the same: each comes from core.layout."""
    found = spelt_segments(ast.parse(path.read_text()))
    assert not found, f"{path.relative_to(ROOT)} spells lake paths itself: {found[:5]} (ask core.layout)"


# what changes the registry or the rollout's state: include/mlops/deploy/transitions.py changes both together
REGISTRY_WRITERS = {
    "set_alias",
    "delete_alias",
    "tag_version",
    "log_to_run",
    "log_training_run",
    "set_audit_head",
    "log_run",
    "end_run",
}
STATE_WRITERS = {"include.mlops.deploy.canary": {"start", "finish"}, "include.mlops.core.rollouts": {"adopt"}}
WRITERS = {f"include.mlops.core.registry.{f}" for f in REGISTRY_WRITERS} | {
    f"{m}.{f}" for m, fs in STATE_WRITERS.items() for f in fs
}


def writer_calls(tree: ast.AST) -> list[str]:
    """Calls that write the registry (its aliases, tags, runs), the rollout's state, or the lake (any Lake writer,
    whatever the lake's variable is called), with imported names resolved (``registry.set_alias``,
    ``from ...registry import delete_alias as drop``; ``drop(...)``)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bound |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            bound |= {a.asname: a.name for a in node.names if a.asname}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        head, _, rest = ast.unparse(node.func).partition(".")
        called = bound.get(head, head) + (f".{rest}" if rest else "")
        if called in WRITERS or (_lake_call(node, LAKE_WRITERS) and node.args):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    return found


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_write_neither_the_registry_nor_the_lake(path):
    """The adapters translate: what changes the registry's aliases, the rollout's state or the lake is the
    platform's (a rollout's transitions keep the aliases and the state consistent, include/mlops/deploy)."""
    found = writer_calls(ast.parse(path.read_text()))
    assert not found, f"{path.relative_to(ROOT)} writes itself: {found[:5]} (call include/mlops)"


def test_the_lake_and_writer_checkers_see_what_they_refuse():
    """The checkers themselves, on what deploy_model's adapter once did, and on what they let pass."""
    from include.mlops.core import registry, rollouts
    from include.mlops.deploy import canary

    assert LAKE_WRITERS <= LAKE_METHODS and all(hasattr(registry, f) for f in REGISTRY_WRITERS)
    assert all(hasattr(canary, f) for f in STATE_WRITERS["include.mlops.deploy.canary"])
    assert all(hasattr(rollouts, f) for f in STATE_WRITERS["include.mlops.core.rollouts"])
    refused = ast.parse(
        "from include.mlops.core import registry\n"
        "from include.mlops.core.registry import delete_alias as drop\n"
        "from include.mlops.deploy import canary\n"
        "def adapter(lake, result, v):\n"
        "    lake.path('deploy', 'rollout.json')\n"
        "    lake.write_json(result, 'reports', 'deployments', f'v{v}.json')\n"
        "    lake.uri(*('deployments', 'history'))\n"
        "    lake.exists(layout.deployment_reports(), 'v' + v + '.json')\n"
        "    registry.set_alias('champion', v)\n"
        "    drop('challenger')\n"
        "    canary.finish(lake, 'promoted', result)\n"
    )
    assert [f.split(":")[0] for f in spelt_segments(refused)] == ["line 5", "line 6", "line 7", "line 8"]
    assert [f.split(": ")[1] for f in writer_calls(refused)] == [
        "lake.write_json",
        "registry.set_alias",
        "drop",
        "canary.finish",
    ]
    passed = ast.parse(
        "from include.mlops.core import registry\n"
        "def adapter(lake, v, name):\n"
        "    lake.uri(*layout.canary_evidence(v))\n"
        "    lake.exists(layout.landing(name, '2013-01-01'), layout.SUCCESS)\n"
        "    os.path.exists('/tmp/x')\n"
        "    registry.alias_version('champion')\n"
        "    dict(a=1).copy()\n"
    )
    assert spelt_segments(passed) == [] and writer_calls(passed) == []
