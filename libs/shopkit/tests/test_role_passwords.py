"""Each service's database role has its own password (SHOP_DB_PASSWORD_<SERVICE>), falling back to
SHOP_DB_ROLE_PASSWORD; provision and service_database_url both go through KitSettings.role_password."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from shopkit.settings import KitSettings

pytestmark = pytest.mark.unit

SERVICES = ("auth", "catalog", "orders", "payments")
PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://db.internal:5432/shop",
    "amqp_url": "amqp://shop:secret@mq/",
    "jwt_public_key": "pem",
    "internal_token": "x" * 32,
}


def login(url: str) -> tuple[str | None, str]:
    parts = urlsplit(url)
    return parts.username, unquote(parts.password or "")


def test_each_service_connects_with_its_own_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in SERVICES:
        monkeypatch.setenv(f"SHOP_DB_PASSWORD_{service.upper()}", f"{service}/p@ss:word")
    settings = KitSettings(_env_file=None, database_url="postgresql://db.internal:5432/shop")  # type: ignore[call-arg]
    for service in SERVICES:
        url = settings.service_database_url(service)
        assert login(url) == (f"shop_{service}", f"{service}/p@ss:word")
        assert urlsplit(url).hostname == "db.internal" and urlsplit(url).path == "/shop"


def test_the_shared_password_covers_roles_without_their_own() -> None:
    settings = KitSettings(_env_file=None, db_role_password="shared", db_password_orders="orders-own")  # type: ignore[call-arg]
    assert settings.role_password("orders") == "orders-own"
    assert settings.role_password("catalog") == "shared"


def test_development_falls_back_to_the_per_role_default() -> None:
    settings = KitSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.role_password("auth") == "shop_auth-dev-password"


def test_production_needs_only_the_services_own_password() -> None:
    settings = KitSettings(_env_file=None, **PRODUCTION, db_password_catalog="catalog-secret")  # type: ignore[arg-type]
    assert login(settings.service_database_url("catalog")) == ("shop_catalog", "catalog-secret")
    # Another service's role cannot be reached with this service's settings.
    with pytest.raises(ValueError, match="SHOP_DB_PASSWORD_ORDERS"):
        settings.service_database_url("orders")


@pytest.mark.parametrize("password", [None, "", "shop_payments-dev-password"])
def test_production_refuses_a_missing_or_default_password(password: str | None) -> None:
    settings = KitSettings(_env_file=None, **PRODUCTION, db_password_payments=password)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SHOP_DB_PASSWORD_PAYMENTS \(or SHOP_DB_ROLE_PASSWORD\)"):
        settings.role_password("payments")
