"""In production the gateway needs its public key and the service credential, but no database or
broker URL: it holds no data and sends no events (the services still need both)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from shopkit.settings import KitSettings

pytestmark = pytest.mark.unit

PRODUCTION = {
    "environment": "production",
    "jwt_public_key": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n",
    "internal_token": "a-long-random-service-to-service-secret-0123",
}


def test_the_gateway_starts_in_production_without_database_or_broker() -> None:
    assert GatewaySettings(_env_file=None, **PRODUCTION).environment == "production"  # type: ignore[arg-type]


def test_a_service_does_not() -> None:
    with pytest.raises(ValidationError, match="SHOP_DATABASE_URL"):
        KitSettings(_env_file=None, **PRODUCTION)  # type: ignore[arg-type]


def test_the_gateway_still_refuses_a_missing_public_key() -> None:
    with pytest.raises(ValidationError, match="SHOP_JWT_PUBLIC_KEY"):
        GatewaySettings(_env_file=None, **{**PRODUCTION, "jwt_public_key": None})  # type: ignore[arg-type]
