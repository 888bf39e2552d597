"""The dependency lock: requirements/*.txt, resolved by `make lock` (uv) with a hash for every file.

    python -m tools.lock check         every requirement of pyproject.toml is pinned, the same in each lock
    python -m tools.lock prune LOCK    uninstall what this environment has beyond LOCK

`make install` runs both, so a venv holds exactly the lock and a requirement added to pyproject.toml
without `make lock` is named at once instead of failing later as an import error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_LOCK = REPO_ROOT / "requirements" / "dev.txt"
MAIN_LOCK = REPO_ROOT / "requirements" / "main.txt"
OPS_LOCK = REPO_ROOT / "requirements" / "ops-tools.txt"
OPS_INPUT = REPO_ROOT / "requirements" / "ops-tools.in"
UV_LOCK = REPO_ROOT / "requirements" / "uv.txt"
PROJECT = "shop"
# pip manages itself: the venv keeps the one it was created with.
NOT_LOCKED = frozenset({"pip"})


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503)
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, environment: Mapping[str, str] | None = None) -> bool:
        return self.marker is None or self.marker.evaluate(dict(environment) if environment else None)


def logical_lines(text: str) -> Iterable[str]:
    """The lock's requirement lines with their backslash continuations joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            yield pending.strip()
        pending = ""
    if pending.strip():
        yield pending.strip()


def parse_lock(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    for line in logical_lines(text):
        spec, *options = line.split(" --")
        hashes = tuple(o.removeprefix("hash=") for o in options if o.startswith("hash="))
        requirement = Requirement(spec)
        versions = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(versions) != 1 or len(requirement.specifier) != 1:
            raise ValueError(f"not an exact pin: {spec!r}")
        if not hashes:
            raise ValueError(f"no hash for {requirement.name}")
        name = canonicalize_name(requirement.name)
        pins[name] = Pin(name, versions[0], requirement.marker, hashes)
    return pins


def read_lock(path: Path) -> dict[str, Pin]:
    return parse_lock(path.read_text())


def wanted(pins: Mapping[str, Pin], environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the lock installs on this machine (markers evaluated): name -> version."""
    return {name: pin.version for name, pin in pins.items() if pin.applies(environment)}


def installed() -> dict[str, str]:
    """name -> version of every distribution in this environment, except the project and pip."""
    found = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    return {name: version for name, version in found.items() if name != PROJECT and name not in NOT_LOCKED}


def unpinned(requirements: Iterable[str], pins: Mapping[str, Pin], lock_name: str) -> list[str]:
    """Requirements (PEP 508 strings) the lock does not satisfy: missing, or pinned outside the range."""
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not in {lock_name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{lock_name} pins {requirement.name}=={pin.version}, outside {requirement.specifier}")
    return problems


def check(root: Path = REPO_ROOT) -> list[str]:
    """Everything that says the locks are stale or inconsistent; empty when they are not."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime: list[str] = project["dependencies"]
    dev: list[str] = project.get("optional-dependencies", {}).get("dev", [])
    names = ("dev.txt", "main.txt", "ops-tools.txt", "uv.txt")
    locks = {name: read_lock(root / "requirements" / name) for name in names}
    problems = unpinned(runtime + dev, locks["dev.txt"], "requirements/dev.txt")
    problems += unpinned(runtime, locks["main.txt"], "requirements/main.txt")
    ops_inputs = [line for line in logical_lines((root / "requirements" / "ops-tools.in").read_text())]
    problems += unpinned(ops_inputs, locks["ops-tools.txt"], "requirements/ops-tools.txt")
    # The images (main.txt) must run on exactly what the tests ran on (dev.txt); the installer that
    # bootstraps the venv (uv.txt) is the one the venv then holds.
    for lock_name in ("main.txt", "uv.txt"):
        for name, pin in locks[lock_name].items():
            dev_pin = locks["dev.txt"].get(name)
            if dev_pin is None or dev_pin.version != pin.version:
                seen = dev_pin.version if dev_pin else "nothing"
                problems.append(f"requirements/{lock_name} pins {name}=={pin.version}, requirements/dev.txt {seen}")
    return problems


def prune(lock: Path) -> list[str]:
    """Uninstall the distributions this environment has beyond the lock; their names."""
    extra = sorted(set(installed()) - set(wanted(read_lock(lock))))
    if extra:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra], check=True)
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lock", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="the locks agree with pyproject.toml and with each other")
    prune_parser = sub.add_parser("prune", help="uninstall what the lock does not list")
    prune_parser.add_argument("lock", type=Path)
    args = parser.parse_args(argv)
    if args.command == "prune":
        removed = prune(args.lock)
        if removed:
            print(f"removed (no longer in {args.lock}): {', '.join(removed)}")
        return 0
    problems = check()
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        print("lock: edit pyproject.toml, then run `make lock`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
