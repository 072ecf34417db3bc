"""constraints-3.11.txt (scripts/constraints.sh, `make constraints`) pins what the set-up installs: one plain
name==version line per distribution, every requirement of requirements*.txt pinned within its range, Airflow at
the version requirements-dev.txt names, and this environment installed at exactly those versions (a set-up that
ignored the file, or a requirement added without regenerating it, shows up here). No network: it reads the files
and this interpreter's installed distributions."""

from __future__ import annotations

import functools
import importlib.metadata as md
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints-3.11.txt"
PIN = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==([0-9][0-9A-Za-z.!]*)")
# installed by the set-up but not pinned in the file: pip's own tooling (Airflow's files leave it out too) and
# Horovod, which has no wheels and which scripts/install_horovod.sh builds from source at the version it pins
UNPINNED = {"pip", "setuptools", "wheel", "horovod"}
# what scripts/install_horovod.sh installs besides Horovod (the file pins them: constraints.sh installs them too)
HOROVOD_SCRIPT = ["torch", "numpy", "cmake", "cloudpickle", "psutil", "pyyaml", "packaging"]


def _pins(text: str) -> list[tuple[str, str]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.fullmatch(line)
        assert m, f"line {n} is not a plain name==version pin: {line!r}"
        out.append(m.groups())
    return out


def _requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements file, following its -r includes."""
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            reqs += _requirements(path.parent / line.split(None, 1)[1])
        elif line.startswith("-"):
            pytest.fail(f"{path.name}: option {line!r}: the test does not know how to read it")
        else:
            reqs.append(Requirement(line))
    return reqs


TEXT = CONSTRAINTS.read_text()
PINS = {canonicalize_name(name): version for name, version in _pins(TEXT)}
DIRECT = _requirements(ROOT / "requirements-dev.txt")


def test_one_plain_pin_per_distribution():
    names = [canonicalize_name(name) for name, _ in _pins(TEXT)]
    assert len(names) > 100, "the whole resolved set, not only the direct requirements"
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"pinned more than once (PEP 503 names): {dupes}"
    body = [line.strip() for line in TEXT.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not [line for line in body if re.search(r"://|@|^[./~]|file:", line)], "a URL or a local path"
    assert not UNPINNED & set(names), UNPINNED & set(names)
    assert not any("+" in v for v in PINS.values()), "a local build label (+cpu...) in a pin"


def test_header_states_what_it_is_for_and_how_to_regenerate_it():
    header = TEXT[: TEXT.index("\n" + next(iter(_pins(TEXT)))[0] + "==")]
    assert "apache-airflow 3.3.2 and Python 3.11" in header
    assert "make constraints" in header and "generated on" in header
    assert "constraints-overrides" in header


def test_every_direct_requirement_is_pinned_within_its_range():
    assert {canonicalize_name(r.name) for r in DIRECT} >= {"apache-airflow", "pandas", "pytest"}
    for req in DIRECT:
        name = canonicalize_name(req.name)
        assert name in PINS, f"{req} is not in {CONSTRAINTS.name}: run `make constraints`"
        assert req.specifier.contains(PINS[name], prereleases=True), f"{req}: pinned {PINS[name]}"


def test_airflow_is_pinned_at_the_project_version():
    airflow = [r for r in DIRECT if canonicalize_name(r.name) == "apache-airflow"]
    assert [str(r.specifier) for r in airflow] == ["==3.3.2"]
    assert PINS["apache-airflow"] == "3.3.2"
    # Airflow's parts move with it (3.3.2 ships core 3.3.2 and the task SDK 1.3.2)
    assert PINS["apache-airflow-core"] == "3.3.2"
    assert PINS["apache-airflow-task-sdk"].startswith("1.3.")


def test_the_horovod_script_installs_are_pinned():
    """install_horovod.sh runs under PIP_CONSTRAINT (Makefile): what it installs has a pin to follow, and torch's
    pin is its TORCH_VERSION without a build label (torch==2.13.0 takes 2.13.0+cpu)."""
    torch_version = re.search(r"^TORCH_VERSION=(\S+)$", (ROOT / "scripts/install_horovod.sh").read_text(), re.M)[1]
    assert PINS["torch"] == torch_version
    assert [n for n in HOROVOD_SCRIPT if canonicalize_name(n) not in PINS] == []
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-dev.txt -c constraints-3.11.txt" in makefile
    assert "PIP_CONSTRAINT=$(CURDIR)/constraints-3.11.txt scripts/install_horovod.sh" in makefile


def _closure(roots: list[Requirement]) -> dict[str, str]:
    """The installed distributions these requirements bring, with their extras and dependencies, name -> version."""
    found: dict[str, str] = {}
    todo = [(canonicalize_name(r.name), set(r.extras)) for r in roots if r.marker is None or r.marker.evaluate()]
    done: set[tuple[str, str]] = set()
    while todo:
        name, extras = todo.pop()
        key = (name, ",".join(sorted(extras)))
        if key in done:
            continue
        done.add(key)
        dist = _installed().get(name)
        if dist is None:
            pytest.fail(f"{name} is required but not installed in this environment: run `make setup`")
        found[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((canonicalize_name(req.name), set(req.extras)))
    return found


def test_this_environment_is_installed_at_the_pinned_versions():
    """What requirements-dev.txt brings into .venv, and what install_horovod.sh adds, is installed at the pins:
    the set-up followed the file. torch is compared without its build label (2.13.0+cpu is the 2.13.0 pin)."""
    if "apache-airflow" not in _installed():
        pytest.skip("not the set-up's environment (no apache-airflow): nothing to compare")
    roots = DIRECT + [Requirement(n) for n in HOROVOD_SCRIPT if canonicalize_name(n) in _installed()]
    installed = _closure(roots)
    assert len(installed) > 100
    unpinned = sorted(set(installed) - set(PINS) - UNPINNED)
    assert not unpinned, f"installed by the set-up but not in {CONSTRAINTS.name}: {unpinned} (`make constraints`)"
    differ = {
        name: (version, PINS[name])
        for name, version in installed.items()
        if name in PINS and Version(version).public != Version(PINS[name]).public
    }
    assert not differ, f"installed version != pin (installed, pinned): {differ}"
    labelled = {n: v for n, v in installed.items() if Version(v).local and n != "torch"}
    assert not labelled, f"only torch may carry a build label: {labelled}"


@functools.cache
def _installed() -> dict[str, md.Distribution]:
    """This interpreter's installed distributions by PEP 503 name (the first on sys.path, as imports see them)."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return found
