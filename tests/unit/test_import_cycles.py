"""No import cycle anywhere in the project: the modules of include/mlops, plugins/, dags/ and scripts/ import each
other along a graph without a loop, counting the imports inside functions too (a module that imports another at
call time still depends on it, and a cycle through it runs a half-initialised module as soon as the order of the
first imports changes)."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sources(root: Path) -> list[tuple[Path, str]]:
    """Each folder that is on ``sys.path`` when the project's modules run, with the files imported by name from
    it: the platform from the repository's root, the plugins and the DAG files from their folders (Airflow puts
    them on the path), each script folder from itself (a script imports its neighbours by bare name)."""
    scripts = sorted({p.parent for p in (root / "scripts").rglob("*.py")})
    return [(root, "include/mlops/**/*.py"), (root / "plugins", "**/*.py"), (root / "dags", "**/*.py")] + [
        (folder, "*.py") for folder in scripts
    ]


def modules(root: Path) -> dict[str, Path]:
    """The project's modules by the name they are imported as (a package by its ``__init__.py``)."""
    out: dict[str, Path] = {}
    for base, pattern in sources(root):
        for path in sorted(base.glob(pattern)):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            assert name not in out, f"{path} and {out.get(name)} are both imported as {name!r}"
            out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The project modules ``name`` imports, anywhere in it (its top level and its functions), with the line of the
    first import of each: ``from a import b`` is an import of the module ``a.b`` where there is one, else of ``a``;
    ``import a.b`` of the longest of ``a.b``, ``a`` that is a module of the project."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None:
            out.setdefault(target, line)

    def longest(dotted: str) -> str | None:
        parts = dotted.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known), None)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(longest(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}" if module else alias.name
                add(child if child in known else longest(module) if module else None, node.lineno)
    out.pop(name, None)
    return out


def graph(root: Path) -> dict[str, dict[str, int]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def components(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    members.append(m)
                    if m == node:
                        break
                if len(members) > 1:
                    found.append(sorted(members))
    return found


def shortest_cycle(edges: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself inside one component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node]):
            if child not in within or child in came_from:
                continue
            came_from[child] = node
            if child == start:
                path = [start]
                while path[-1] != start or len(path) == 1:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(child)
    raise AssertionError(f"{start} is on no cycle")  # a component's member always is


def cycles(root: Path) -> list[str]:
    """Every cycle, named: for each component, the shortest cycle through each of its modules (each line of an
    arrow is the import's line in the module before it)."""
    edges = graph(root)
    named: list[str] = []
    for members in components(edges):
        seen: set[tuple[str, ...]] = set()
        for start in members:
            cycle = shortest_cycle(edges, start, set(members))
            turn = cycle.index(min(cycle[:-1]))
            key = tuple(cycle[turn:-1] + cycle[:turn])
            if key in seen:
                continue
            seen.add(key)
            ring = list(key) + [key[0]]
            named.append(" -> ".join(f"{a} (line {edges[a][b]})" for a, b in zip(ring, ring[1:])) + f" -> {key[0]}")
    return named


def test_no_import_cycle_in_the_project():
    found = cycles(ROOT)
    assert not found, "import cycles (move the shared names to the module that owns them):\n" + "\n".join(found)


def test_the_checker_sees_a_cycle_through_a_function_level_import(tmp_path):
    """The checker itself, on a project of its own: a cycle closed by an import inside a function is named, and
    the same modules without it are not."""
    stage = tmp_path / "include" / "mlops" / "stage"
    stage.mkdir(parents=True)
    for folder in ("plugins", "dags", "scripts"):
        (tmp_path / folder).mkdir()
    (tmp_path / "include" / "mlops" / "__init__.py").write_text("")
    (stage / "__init__.py").write_text("")
    (stage / "a.py").write_text("from .b import B\n")
    (stage / "b.py").write_text("B = 1\n\ndef f():\n    from include.mlops.stage import a\n    return a\n")
    (tmp_path / "dags" / "d.py").write_text("from include.mlops.stage.a import B\n")
    assert cycles(tmp_path) == [
        "include.mlops.stage.a (line 1) -> include.mlops.stage.b (line 4) -> include.mlops.stage.a"
    ]
    (stage / "b.py").write_text("B = 1\n")
    assert cycles(tmp_path) == []


def test_the_airflow_building_blocks_never_import_a_dags_task_module():
    """``mlops_airflow.blocks`` is shared by every DAG; a DAG's own module (``mlops_airflow.tasks.<dag>``) hands
    its functions in (a sensor's look), so a block never depends on one DAG."""
    edges = graph(ROOT)
    blocks = [m for m in edges if m.startswith("mlops_airflow.blocks")]
    assert blocks, "no module of mlops_airflow.blocks found"
    wrong = {
        f"{m} (line {line})": target
        for m in blocks
        for target, line in edges[m].items()
        if target.startswith("mlops_airflow.tasks")
    }
    assert not wrong, wrong
