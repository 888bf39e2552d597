"""Compose files as Docker Compose v2 reads them, with no Docker here: YAML with the `!override` and
`!reset` tags, the files merged in order, then `${...}` interpolated (since compose-go 2.1, after the
merge, so a value an override replaces is never asked for). Only the merge rules these files use:
mappings merge key by key, `!override` replaces, `!reset` removes, the listed sequences append, any
other sequence is replaced."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = REPO_ROOT / "docker-compose.yml"
DEV = REPO_ROOT / "docker-compose.dev.yml"
# Sequences Compose merges by appending (the others, command and healthcheck test among them, replace).
APPENDED = frozenset({"ports", "expose", "volumes", "tmpfs", "cap_drop", "cap_add", "security_opt", "dns"})


@dataclass(frozen=True)
class Override:
    value: Any


class _Reset:
    pass


RESET = _Reset()


class ComposeLoader(yaml.SafeLoader):
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!override", _override)
ComposeLoader.add_constructor("!reset", lambda _loader, _node: RESET)


def read(path: Path) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(loaded, dict), f"{path} is not a mapping"
    return loaded


def _plain(value: Any) -> Any:
    if isinstance(value, Override):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(override, Override):
        return _plain(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if value is RESET:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = merge(merged[name], value, name)
            else:
                merged[name] = _plain(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in APPENDED:
        return base + [v for v in _plain(override) if v not in base]
    return _plain(override)


_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*))")
_BRACED = re.compile(r"(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


@dataclass
class Interpolation:
    env: Mapping[str, str]
    errors: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def text(self, value: str) -> str:
        return _VARIABLE.sub(self._substitute, value)

    def _substitute(self, match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            self.used.add(match["named"])
            return self.env.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        assert braced, f"unsupported interpolation ${{{match['braced']}}}"
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        assert "${" not in arg, "nested interpolation is not used in these files"
        self.used.add(name)
        value = self.env.get(name)
        if op is None:
            return value or ""
        present = bool(value) if op.startswith(":") else value is not None
        kind = op[-1]
        if kind == "-":
            return value if present and value is not None else arg
        if kind == "+":
            return arg if present else ""
        if not present:
            self.errors.append(f"required variable {name} is missing a value: {arg}")
            return ""
        return value or ""

    def walk(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, dict):
            return {k: self.walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.walk(v) for v in node]
        return node


@dataclass
class Project:
    services: dict[str, dict[str, Any]]
    volumes: dict[str, Any]
    errors: list[str]
    used: set[str]

    def environment(self, service: str) -> dict[str, str]:
        env = self.services[service].get("environment", {})
        assert isinstance(env, dict), "environment is written as a mapping in these files"
        return {k: "" if v is None else str(v) for k, v in env.items()}


def load(*files: Path, env: Mapping[str, str] | None = None, model: dict[str, Any] | None = None) -> Project:
    """The project the files describe (or `model`, an already merged copy), interpolated with `env`."""
    if model is None:
        model = {}
        for path in files:
            model = merge(model, read(path))
    model = {k: v for k, v in model.items() if not k.startswith("x-")}
    interpolation = Interpolation(env or {})
    resolved = interpolation.walk(model)
    return Project(
        resolved.get("services", {}), resolved.get("volumes", {}) or {}, interpolation.errors, interpolation.used
    )


def merged_model(*files: Path) -> dict[str, Any]:
    model: dict[str, Any] = {}
    for path in files:
        model = merge(model, read(path))
    return model


def variables(path: Path) -> dict[str, str]:
    """Every ${NAME...} in a file: name -> its operator (`:?`, `:-`, ... or '' for plain)."""
    found: dict[str, str] = {}
    for match in _VARIABLE.finditer(path.read_text()):
        if match["braced"]:
            braced = _BRACED.fullmatch(match["braced"])
            assert braced
            found[braced["name"]] = braced["op"] or ""
        elif match["named"]:
            found[match["named"]] = ""
    return found
