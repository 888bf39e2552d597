"""Every process docker compose starts is the one the distributed mode (tools/supervisor/) starts: the
same command, port, readiness probe and wiring, so the e2e tests cover what the images run."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tools import supervisor
from tools.supervisor import PROCESSES, SERVICES

from . import distributed
from .composefile import BASE, DEV, load, merged_model
from .distributed import Deployed, cluster, compare

pytestmark = pytest.mark.ops

PRODUCTION_PROCESSES = (*SERVICES, "gateway")
_PROBE = re.compile(r"http://127\.0\.0\.1:(?P<port>\d+)(?P<path>/[^'\"\s]*)")


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p)) for p in service.get("expose", [])}
    ports |= {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])}
    return ports


def deployed(service: dict[str, Any], env: dict[str, str]) -> Deployed:
    ports = container_ports(service)
    built_for = service.get("build", {}).get("args", {}).get("PORT")
    if built_for is not None:
        ports.add(int(built_for))
    port = ports.pop() if len(ports) == 1 else None
    probe = _PROBE.search(" ".join(service.get("healthcheck", {}).get("test", [])))
    ready_path = None
    if probe:
        ready_path = probe["path"] if int(probe["port"]) == port else f"{probe['path']} on port {probe['port']}"
    return Deployed(list(service.get("command", [])), port, ready_path, dict(env))


def differences(model: dict[str, Any], names: tuple[str, ...], env: dict[str, str], *, production: bool) -> list[str]:
    project = load(model=copy.deepcopy(model), env=env)
    assert not project.errors, project.errors
    problems = []
    for name in names:
        if name not in project.services:
            problems.append(f"{name}: not in the compose project")
            continue
        service = project.services[name]
        problems += compare(name, deployed(service, project.environment(name)), production=production)
    return problems


def test_production_compose_runs_the_supervisors_processes(production_env: dict[str, str]) -> None:
    model = merged_model(BASE)
    assert differences(model, PRODUCTION_PROCESSES, production_env, production=True) == []
    # Production runs no sandbox (ARCHITECTURE: sandboxes never stand beside real keys).
    assert set(model["services"]) == {*PRODUCTION_PROCESSES, "postgres", "rabbitmq"}


def test_development_override_runs_every_supervisor_process() -> None:
    model = merged_model(BASE, DEV)
    assert differences(model, tuple(PROCESSES), {}, production=False) == []


def test_images_are_built_for_their_service_and_port() -> None:
    model = merged_model(BASE, DEV)
    running = cluster()
    for name in PROCESSES:
        build = model["services"][name]["build"]
        assert build["dockerfile"] == "docker/service.Dockerfile" and build["context"] == "."
        if name in PRODUCTION_PROCESSES:
            assert build["target"] == "service"
            assert build["args"] == {"SERVICE": name, "PORT": str(running.port(name))}
        else:
            assert build["target"] == "sandbox" and "args" not in build


def _mutated(model: dict[str, Any], service: str, key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(model)
    target = changed["services"][service]
    *path, last = key.split(".")
    for part in path:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return changed


@pytest.mark.parametrize(
    ("service", "key", "value", "expected"),
    [
        ("orders", "command", ["python", "-m", "orders", "--host", "0.0.0.0", "--port", "8013"], "orders: command"),
        ("orders", "command", ["python", "-m", "orders.app", "--host", "0.0.0.0", "--port", "8003"], "orders: command"),
        ("catalog", "expose", ["8012"], "catalog: listens on None"),
        ("orders", "environment.SHOP_CATALOG_URL", None, "orders: SHOP_CATALOG_URL is missing"),
        (
            "orders",
            "environment.SHOP_CATALOG_URL",
            "http://catalog:8003",
            "orders: SHOP_CATALOG_URL='http://catalog:8003'",
        ),
        ("payments", "environment.SHOP_SANDBOX_STRIPE_URL", "http://stripe-sandbox:8010", "does not read it here"),
        (
            "catalog",
            "healthcheck.test",
            ["CMD", "python", "-c", "urlopen('http://127.0.0.1:8002/healthz')"],
            "catalog: health check asks /healthz, the supervisor waits for /readyz",
        ),
        ("auth", "environment.SHOP_DATABASE_URL", "sqlite:///var/auth.db", "auth: SHOP_DATABASE_URL"),
    ],
)
def test_the_comparison_fails_on_a_drifted_compose_file(
    production_env: dict[str, str], service: str, key: str, value: Any, expected: str
) -> None:
    model = merged_model(BASE)
    assert differences(model, PRODUCTION_PROCESSES, production_env, production=True) == []
    problems = differences(_mutated(model, service, key, value), PRODUCTION_PROCESSES, production_env, production=True)
    assert any(expected in problem for problem in problems), problems


def test_the_comparison_fails_when_the_supervisor_moves(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = dict(supervisor.PROCESSES, orders=("orders", 13, "/readyz"))
    monkeypatch.setattr(supervisor.cluster, "PROCESSES", moved)
    monkeypatch.setattr(distributed, "PROCESSES", moved)
    problems = differences(merged_model(BASE), PRODUCTION_PROCESSES, production_env, production=True)
    assert any(p.startswith("orders: command") for p in problems), problems
    assert any(p.startswith("orders: listens on 8003, the supervisor's port is 8013") for p in problems), problems
    assert any("SHOP_ORDERS_URL" in p for p in problems), problems
