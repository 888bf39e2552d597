"""docker compose is production by default: no default secret or admin password (a missing one stops
compose, naming it), each container sees only its own secrets, and the environment each service gets
is enough for its production settings to start. The development override needs no secret at all."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from shopkit.settings import KitSettings
from tools.supervisor import SERVICES

from .composefile import BASE, DEV, load, merged_model, variables
from .conftest import NPM_BIN, REPO_ROOT, env_example_names, tool
from .distributed import settings_class

pytestmark = pytest.mark.ops

SHOP_PROCESSES = (*SERVICES, "gateway")
OPTIONAL = {"SHOP_FRONTEND_URL"}
# Who may see each secret (by the value interpolated into a container's environment).
SEES = {
    "POSTGRES_PASSWORD": {"postgres"},
    **{f"SHOP_DB_PASSWORD_{s.upper()}": {s, "postgres"} for s in SERVICES},
    "SHOP_AMQP_PASSWORD": {*SERVICES, "rabbitmq"},
    "SHOP_INTERNAL_TOKEN": set(SHOP_PROCESSES),
    "SHOP_JWT_PUBLIC_KEY": set(SHOP_PROCESSES),
    "SHOP_JWT_PRIVATE_KEY": {"auth"},
    "SHOP_ADMIN_PASSWORD": {"auth"},
    **{name: {"payments"} for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")},
    **{f"BKASH_{k}": {"payments"} for k in ("APP_KEY", "APP_SECRET", "USERNAME", "PASSWORD")},
}
PROVIDER_VARIABLES = ("STRIPE_", "BKASH_")


def test_every_shop_service_runs_in_production(production_env: dict[str, str]) -> None:
    project = load(BASE, env=production_env)
    for name in SHOP_PROCESSES:
        assert project.environment(name)["SHOP_ENVIRONMENT"] == "production", name


def test_a_missing_secret_stops_compose_naming_it() -> None:
    project = load(BASE, env={})
    named = {re.match(r"required variable (\w+) is missing", e).group(1) for e in project.errors}  # type: ignore[union-attr]
    assert named == set(env_example_names()) - OPTIONAL
    # One blank value is enough to stop it, and the message says which.
    filled = {name: "x" for name in env_example_names()} | {"SHOP_ADMIN_PASSWORD": ""}
    errors = load(BASE, env=filled).errors
    assert errors and all(e.startswith("required variable SHOP_ADMIN_PASSWORD is missing") for e in errors)


def test_nothing_secret_has_a_default_and_env_example_lists_every_variable() -> None:
    operators = variables(BASE)
    assert set(operators) == set(env_example_names())
    assert {name for name, op in operators.items() if op != ":?"} == OPTIONAL
    # No shared env_file that would hand every service every secret.
    for path in (BASE, DEV):
        assert "env_file" not in path.read_text(), path


def test_each_container_sees_only_its_own_secrets(production_env: dict[str, str]) -> None:
    project = load(BASE, env=production_env)
    for secret, allowed in SEES.items():
        value = production_env[secret]
        seen_by = {name for name in project.services if any(value in v for v in project.environment(name).values())}
        assert seen_by == allowed, f"{secret} reaches {sorted(seen_by)}, only {sorted(allowed)} should see it"
    assert set(SEES) | {"SHOP_PUBLIC_URL", "SHOP_ADMIN_EMAIL", "BKASH_BASE_URL", *OPTIONAL} == set(env_example_names())


def _start_settings(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> KitSettings:
    for key in list(os.environ):
        if key.startswith(("SHOP_", *PROVIDER_VARIABLES)):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class(name)(_env_file=None)  # type: ignore[call-arg]
    assert isinstance(settings, KitSettings)
    if name in SERVICES:
        settings.service_database_url(name)  # production refuses a service without its own password
    return settings


def test_each_services_compose_environment_is_enough_to_start_in_production(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load(BASE, env=production_env)
    for name in SHOP_PROCESSES:
        with monkeypatch.context() as patch:
            settings = _start_settings(name, project.environment(name), patch)
        assert settings.environment == "production"


def test_a_service_cannot_start_with_another_services_environment(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load(BASE, env=production_env)
    with pytest.raises(ValueError, match="SHOP_DB_PASSWORD_ORDERS"):
        _start_settings("orders", project.environment("catalog"), monkeypatch)
    with pytest.raises(ValueError, match="SHOP_JWT_PRIVATE_KEY"):
        _start_settings("auth", project.environment("gateway"), monkeypatch)
    with pytest.raises(ValueError, match="STRIPE_SECRET_KEY"):
        _start_settings("payments", project.environment("orders") | {"SHOP_DB_PASSWORD_PAYMENTS": "x"}, monkeypatch)


def test_the_development_override_needs_no_secret_and_runs_the_sandboxes(monkeypatch: pytest.MonkeyPatch) -> None:
    project = load(BASE, DEV, env={})
    assert project.errors == []
    for name in SHOP_PROCESSES:
        with monkeypatch.context() as patch:
            settings = _start_settings(name, project.environment(name), patch)
        assert settings.environment == "development"
    with monkeypatch.context() as patch:
        payments = _start_settings("payments", project.environment("payments"), patch)
    assert payments.stripe_base == "http://stripe-sandbox:8010"  # type: ignore[attr-defined]
    assert payments.bkash_base == "http://bkash-sandbox:8011"  # type: ignore[attr-defined]
    # Development JWT keys are generated once and shared by every service through one volume.
    for name in SHOP_PROCESSES:
        assert "jwt-keys:/app/var/jwt" in project.services[name]["volumes"], name


def test_services_run_read_only_without_privileges_within_measured_memory() -> None:
    # Peak RSS measured by `make bench` (README), MB; the limits leave room above it.
    measured = {"auth": 200, "payments": 125, "orders": 120, "catalog": 110, "gateway": 85}
    services = merged_model(BASE)["services"]
    for name in SHOP_PROCESSES:
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        limit = service["deploy"]["resources"]["limits"]["memory"]
        assert limit.endswith("M") and int(limit[:-1]) >= 1.5 * measured[name], (name, limit)


def test_dclint_passes_on_both_compose_files(tmp_path: Path) -> None:
    dclint = tool(NPM_BIN / "dclint")
    command = [dclint, "-c", ".dclintrc", "--max-warnings", "0", "--color", "false", BASE.name, DEV.name]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # And it does look: a file with an unbound published port fails.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text('name: probe\nservices:\n  web:\n    image: nginx:1.27\n    ports:\n      - "8080:80"\n')
    result = subprocess.run([dclint, "-c", ".dclintrc", str(broken)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "no-unbound-port-interfaces" in result.stdout
