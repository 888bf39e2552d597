"""The venv is exactly the lock; the lock covers pyproject.toml; the images and CI install from it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tools import lock

from .conftest import REPO_ROOT

pytestmark = pytest.mark.ops

DEV_ONLY = ("pytest", "ruff", "mypy", "playwright", "uv", "setuptools", "testcontainers")


def freeze() -> dict[str, str]:
    command = [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    pins = {}
    for line in output.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not a pinned distribution: {line!r}"
        pins[canonicalize_name(name)] = version
    pins.pop("pip", None)  # the venv's own installer, not a dependency
    return pins


def test_the_venv_holds_exactly_the_lock() -> None:
    if not sys.prefix.startswith(str(REPO_ROOT)):
        pytest.skip("not running from this checkout's .venv (make test does)")
    assert freeze() == lock.wanted(lock.read_lock(lock.DEV_LOCK))
    editable = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    assert "shop==0.1.0" in editable.stdout or "-e " in editable.stdout


def test_the_locks_cover_pyproject_and_agree_with_each_other() -> None:
    assert lock.check() == []
    dev, main = lock.read_lock(lock.DEV_LOCK), lock.read_lock(lock.MAIN_LOCK)
    for name, pin in main.items():
        assert dev[name].version == pin.version and set(pin.hashes) <= set(dev[name].hashes), name
    for name in DEV_ONLY:
        assert name in dev and name not in main, name


def _copy_project(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO_ROOT / "requirements", tmp_path / "requirements", ignore=shutil.ignore_patterns("npm"))
    return tmp_path


def test_a_requirement_added_without_make_lock_is_named(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"fastapi>=0.115",', '"fastapi>=0.115",\n    "left-pad-nowhere>=1",', 1))
    assert "left-pad-nowhere is not in requirements/dev.txt" in lock.check(root)
    assert "left-pad-nowhere is not in requirements/main.txt" in lock.check(root)
    pyproject.write_text(text.replace('"stripe>=16,<17"', '"stripe>=17"', 1))
    assert any(p.startswith("requirements/dev.txt pins stripe==16.") for p in lock.check(root))


def test_a_lock_line_without_an_exact_pin_or_a_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="not an exact pin"):
        lock.parse_lock("fastapi>=0.115 \\\n    --hash=sha256:00\n")
    with pytest.raises(ValueError, match="no hash for fastapi"):
        lock.parse_lock("fastapi==0.165.0\n")
    parsed = lock.parse_lock("colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:ab\n    # via x\n")
    assert parsed["colorama"].hashes == ("sha256:ab",)
    assert not parsed["colorama"].applies({"sys_platform": "linux"})


def test_make_ci_and_the_image_install_from_the_lock() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r $(LOCK_UV)" in makefile  # pip bootstraps the installer
    assert "$(UV_INSTALL) --require-hashes -r $(LOCK_DEV)" in makefile
    assert "$(UV_INSTALL) --require-hashes -r $(LOCK_MAIN)" in makefile
    assert "$(UV_INSTALL) --no-deps --no-build-isolation -e ." in makefile
    assert re.search(r"^lock: ", makefile, re.M)
    dockerfile = (REPO_ROOT / "docker" / "service.Dockerfile").read_text()
    assert "COPY requirements/main.txt /tmp/requirements.txt" in dockerfile
    assert "pip install --require-hashes -r /tmp/requirements.txt" in dockerfile
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make install" in ci and "make ops-tools" in ci
    ops = lock.read_lock(lock.OPS_LOCK)
    assert {"checkov", "kubernetes-validate"} <= set(ops)
    assert set(lock.read_lock(lock.UV_LOCK)) == {"uv"}
