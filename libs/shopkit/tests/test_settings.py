"""Production refuses to start with missing or development secrets, naming each one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shopkit.settings import DEV_INTERNAL_TOKEN, KitSettings

pytestmark = pytest.mark.unit

GOOD = {
    "environment": "production",
    "database_url": "postgresql://shop@db/shop",
    "amqp_url": "amqp://shop@mq/",
    "db_role_password": "role-secret",
    "jwt_public_key": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n",
    "internal_token": "a-long-random-service-to-service-secret-0123",
}


def production(**overrides: object) -> KitSettings:
    return KitSettings(_env_file=None, **{**GOOD, **overrides})  # type: ignore[arg-type]


def test_production_starts_with_every_secret_set() -> None:
    assert production().environment == "production"


@pytest.mark.parametrize("token", [DEV_INTERNAL_TOKEN, "short-token"])
def test_production_refuses_a_development_or_weak_service_credential(token: str) -> None:
    with pytest.raises(ValidationError, match="SHOP_INTERNAL_TOKEN"):
        production(internal_token=token)


def test_development_runs_with_the_development_credential() -> None:
    assert KitSettings(_env_file=None).internal_token == DEV_INTERNAL_TOKEN  # type: ignore[call-arg]
