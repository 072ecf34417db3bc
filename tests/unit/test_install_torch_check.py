"""scripts/install_horovod.sh takes torch's CPU build or stops: against a local package index (no network) that
serves a CUDA-style torch (one that pulls nvidia-* packages), it refuses before installing anything and says how
to get the CPU build; a CPU torch goes through; a CUDA torch already installed is refused too."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install_horovod.sh"


def _wheel(
    index: Path, name: str, version: str, requires: list[str] = (), module: str | None = None, source: str = ""
) -> None:
    """A minimal valid wheel of ``name`` in ``index/<name>/`` (a file:// 'simple' index)."""
    dist = name.replace("-", "_")
    folder = index / name
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)
        ),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if module:
        files[f"{module}/__init__.py"] = source
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    whl = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(folder / whl, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    links = "".join(f'<a href="{f.name}">{f.name}</a>\n' for f in sorted(folder.glob("*.whl")))
    (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")  # what pip reads of a file:// index


@pytest.fixture
def venv(tmp_path) -> Path:
    """An empty virtualenv of its own for each test (no torch, no Horovod)."""
    d = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True, timeout=300)
    return d / "bin" / "python"


def _run(python: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MLOPS_"))}
    # only the test's index: no pip.conf, no find-links, no constraints of this machine
    base |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "MLOPS_WHEELHOUSE": "/nonexistent"}
    return subprocess.run(
        ["bash", str(SCRIPT), str(python)], env=base | env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def _installed(python: Path, name: str) -> bool:
    return subprocess.run([str(python), "-m", "pip", "show", "-q", name], capture_output=True).returncode == 0


def test_a_cuda_torch_is_refused_before_anything_is_installed(venv, tmp_path):
    index = tmp_path / "simple"
    _wheel(index, "torch", "2.13.0", ["nvidia-cudnn-cu13==9.20.0"], "torch", "__version__ = '2.13.0'\n")
    _wheel(index, "nvidia-cudnn-cu13", "9.20.0")
    out = _run(venv, {"MLOPS_TORCH_INDEX_URL": index.as_uri()})
    assert out.returncode == 1, out.stdout + out.stderr
    assert (
        f"torch==2.13.0 from {index.as_uri()} is a CUDA build: pip would install nvidia-cudnn-cu13 9.20.0" in out.stderr
    ), out.stderr
    assert "MLOPS_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in out.stderr
    assert "MLOPS_TORCH_ALLOW_CUDA=1" in out.stderr
    assert not _installed(venv, "torch") and not _installed(venv, "nvidia-cudnn-cu13")


def test_the_cpu_build_from_the_configured_index_goes_through(venv, tmp_path):
    index = tmp_path / "simple"
    _wheel(index, "torch", "2.13.0+cpu", [], "torch", "__version__ = '2.13.0+cpu'\nclass version:\n    cuda = None\n")
    # no MLOPS_TORCH_INDEX_URL: pip's own configuration (here PIP_INDEX_URL) decides, as on the project's machines
    out = _run(venv, {"PIP_INDEX_URL": index.as_uri()})
    assert "torch 2.13.0+cpu (CPU build)" in out.stdout, out.stdout + out.stderr
    assert _installed(venv, "torch")
    # (the script then fails on numpy and cmake, which this index does not serve: not what is tested here)


def test_an_installed_cuda_torch_is_refused(venv, tmp_path):
    index = tmp_path / "simple"
    _wheel(
        index, "torch", "2.13.0+cu121", [], "torch", "__version__ = '2.13.0+cu121'\nclass version:\n    cuda = '12.1'\n"
    )
    subprocess.run(
        [
            str(venv),
            "-m",
            "pip",
            "install",
            "-q",
            "--force-reinstall",
            "--index-url",
            index.as_uri(),
            "torch==2.13.0+cu121",
        ],
        check=True,
        env=os.environ | {"PIP_CONFIG_FILE": os.devnull},
        capture_output=True,
        timeout=300,
    )
    out = _run(venv, {"PIP_INDEX_URL": index.as_uri()})
    assert out.returncode == 1
    assert "the installed torch 2.13.0+cu121 is a CUDA build (CUDA 12.1)" in out.stderr, out.stderr
    assert "-m pip uninstall -y torch" in out.stderr
