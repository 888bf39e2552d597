"""What the distributed mode (tools/supervisor/) starts for each process, and a comparison of how a
deployment (the compose file, the Kubernetes manifests) starts the same process against it: command,
port, readiness path and the wiring variables. The e2e tests run the supervisor's processes, so a
deployment that matches it runs what the tests covered."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings

from tools.supervisor import PROCESSES, Cluster

# Containers listen on every interface, on the supervisor's ports from base 8000.
DEPLOYED_HOST = "0.0.0.0"
BASE_PORT = 8000
# Each process's settings: what it reads from the environment.
SETTINGS = {
    "auth": "auth.settings:AuthSettings",
    "catalog": "catalog.settings:CatalogSettings",
    "orders": "orders.settings:OrdersSettings",
    "payments": "payments.settings:PaymentsSettings",
    "gateway": "gateway.settings:GatewaySettings",
    "stripe-sandbox": "sandbox.stripe_sandbox.settings:StripeSandboxSettings",
    "bkash-sandbox": "sandbox.bkash_sandbox.settings:BkashSandboxSettings",
}
# Development only: production runs no sandbox, so nothing points at one.
SANDBOX_WIRING_PREFIX = "SHOP_SANDBOX_"
# Not a process address: where the outside world reaches the gateway, the deployment's own value.
PUBLIC = "SHOP_PUBLIC_URL"
BACKING = ("SHOP_DATABASE_URL", "SHOP_AMQP_URL")


@dataclass
class Deployed:
    """One process as a deployment runs it; an env value of None comes from a reference (a Secret)."""

    command: list[str]
    port: int | None
    ready_path: str | None
    env: dict[str, str | None]


def cluster() -> Cluster:
    return Cluster(
        base_port=BASE_PORT,
        host=DEPLOYED_HOST,
        python="python",
        database_url="postgresql://postgres:5432/shop",
        amqp_url="amqp://rabbitmq:5672/",
        provision=False,
    )


def settings_class(name: str) -> type[BaseSettings]:
    module, _, cls = SETTINGS[name].partition(":")
    found: type[BaseSettings] = getattr(importlib.import_module(module), cls)
    return found


def variables_read(name: str) -> set[str]:
    """The environment variables a process's settings read (prefix + field, or the field's alias)."""
    settings = settings_class(name)
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for field_name, info in settings.model_fields.items():
        alias = info.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


def expected_wiring(name: str, *, production: bool) -> set[str]:
    keys = set(cluster().wiring()) & variables_read(name)
    if production:
        keys = {k for k in keys if not k.startswith(SANDBOX_WIRING_PREFIX)}
    return keys


def _as_deployed(value: str, running: Cluster) -> str:
    """A supervisor address with each process's host replaced by its name on the deployment's network."""
    for process in PROCESSES:
        if process in running.members:
            value = value.replace(running.url(process), f"http://{process}:{running.port(process)}")
    return value


def compare(name: str, deployed: Deployed, *, production: bool) -> list[str]:
    """Every way the deployed process differs from the supervisor's; empty when they agree."""
    running = cluster()
    problems = []
    if deployed.command != running.command(name):
        problems.append(f"{name}: command {deployed.command} is not the supervisor's {running.command(name)}")
    if deployed.port != running.port(name):
        problems.append(f"{name}: listens on {deployed.port}, the supervisor's port is {running.port(name)}")
    ready = PROCESSES[name][2] or "/"
    if deployed.ready_path != ready:
        problems.append(f"{name}: health check asks {deployed.ready_path}, the supervisor waits for {ready}")
    wiring = running.wiring()
    expected = expected_wiring(name, production=production)
    present = set(deployed.env) & set(wiring)
    for key in sorted(expected - present):
        problems.append(f"{name}: {key} is missing (the supervisor sets it)")
    for key in sorted(present - expected):
        problems.append(f"{name}: {key} is set, but {name} does not read it here")
    for key in sorted(expected & present):
        value = deployed.env[key]
        if value is None or key == PUBLIC:
            continue
        if key in BACKING:
            # amqps: the same broker over TLS.
            if urlsplit(value).scheme.removesuffix("s") != urlsplit(wiring[key]).scheme:
                problems.append(f"{name}: {key}={value!r} is not a {urlsplit(wiring[key]).scheme} URL")
        elif value != _as_deployed(wiring[key], running):
            problems.append(f"{name}: {key}={value!r}, the supervisor's is {_as_deployed(wiring[key], running)!r}")
    return problems
