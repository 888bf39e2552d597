"""Fixtures of the auth tests: settings isolated from the environment, the app with its lifespan run
(migrations, admin), and an `AuthApi` helper that speaks the public API and signs hand-made tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from auth.app import create_app
from auth.settings import AuthSettings
from shopkit.auth import load_keys
from shopkit.lifecycle import ServiceRuntime

ADMIN_EMAIL = "root@shop.test"
ADMIN_PASSWORD = "Admin-Secret-42"
PASSWORD = "correct horse battery"

SettingsFactory = Callable[..., AuthSettings]


class AuthApi:
    """The auth service as its clients see it, plus the test's back door to its database."""

    admin_email = ADMIN_EMAIL
    admin_password = ADMIN_PASSWORD
    password = PASSWORD

    def __init__(self, client: TestClient, settings: AuthSettings) -> None:
        self.client = client
        self.settings = settings

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def register(self, email: str, password: str = PASSWORD, full_name: str = "Rahim Uddin") -> dict[str, Any]:
        response = self.client.post(
            "/api/auth/register", json={"email": email, "password": password, "full_name": full_name}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def try_login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.client.post("/api/auth/login", json={"email": email, "password": password})

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.try_login(email, password)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.client.post("/api/auth/refresh", json={"refresh_token": refresh_token})

    def me(self, access_token: str) -> httpx.Response:
        return self.client.get("/api/auth/me", headers={"Authorization": f"Bearer {access_token}"})

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "role": "customer",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=15)).timestamp()),
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return claims

    def sign(self, claims: dict[str, Any]) -> str:
        """Signed with the service's own key: accepted unless the claims themselves are wrong."""
        keys = load_keys(self.settings)
        return jwt.encode(claims, keys.private_pem, algorithm=keys.algorithm, headers={"kid": keys.kid})


def settings_factory(var_dir: Path) -> SettingsFactory:
    def make(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "var_dir": var_dir,
            "database_url": None,
            "amqp_url": None,
            "admin_email": ADMIN_EMAIL,
            "admin_password": ADMIN_PASSWORD,
            "log_json": False,
        }
        values.update(overrides)
        return AuthSettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    return settings_factory(tmp_path)


@pytest.fixture
def sqlite_api(make_settings: SettingsFactory) -> Iterator[AuthApi]:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        yield AuthApi(client, settings)


@pytest.fixture(scope="module")
def shared_sqlite_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthApi]:
    """One app for a module of tests that leave nothing behind that another could trip over."""
    settings = settings_factory(tmp_path_factory.mktemp("auth"))()
    with TestClient(create_app(settings)) as client:
        yield AuthApi(client, settings)


@pytest.fixture
def pg_api(make_settings: SettingsFactory, pg_url: str, bus_namespace: str) -> Iterator[AuthApi]:
    settings = make_settings(database_url=pg_url, bus_namespace=bus_namespace)
    with TestClient(create_app(settings)) as client:
        yield AuthApi(client, settings)
