"""Login work, sessions and housekeeping on the SQLite (all-in-one) database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from auth import service
from auth.models import LoginFailure, RefreshToken

pytestmark = pytest.mark.integration


def _failures(api: Any, email: str) -> int:
    with api.runtime.uow() as uow:
        count = uow.session.scalar(select(func.count()).where(LoginFailure.email == email))
    return int(count or 0)


def test_an_unknown_email_costs_the_same_argon2_work_as_a_wrong_password(
    sqlite_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_api.register("known@example.com")
    verified: list[str] = []
    original = PasswordHasher.verify

    def counting_verify(self: PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
        verified.append(str(stored))
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    assert sqlite_api.try_login("known@example.com", "wrong-password").status_code == 401
    assert sqlite_api.try_login("stranger@example.com", "wrong-password").status_code == 401
    assert len(verified) == 2
    # Same parameters for the decoy as for a real hash, so the work is the same.
    real, decoy = (stored.split("$")[3] for stored in verified)
    assert real == decoy


def test_a_successful_login_clears_earlier_failures(sqlite_api: Any) -> None:
    sqlite_api.register("forgetful@example.com")
    for _ in range(3):
        assert sqlite_api.try_login("forgetful@example.com", "wrong-password").status_code == 401
    assert _failures(sqlite_api, "forgetful@example.com") == 3
    sqlite_api.login("forgetful@example.com")
    assert _failures(sqlite_api, "forgetful@example.com") == 0


def test_logout_ends_that_session_only(sqlite_api: Any) -> None:
    sqlite_api.register("two-devices@example.com")
    phone = sqlite_api.login("two-devices@example.com")
    laptop = sqlite_api.login("two-devices@example.com")
    assert sqlite_api.client.post("/api/auth/logout", json={"refresh_token": phone["refresh_token"]}).status_code == 204
    assert sqlite_api.refresh(phone["refresh_token"]).status_code == 401
    assert sqlite_api.refresh(laptop["refresh_token"]).status_code == 200
    # Logging out twice is still a logout.
    assert sqlite_api.client.post("/api/auth/logout", json={"refresh_token": phone["refresh_token"]}).status_code == 204


def test_an_expired_refresh_token_is_401(sqlite_api: Any) -> None:
    sqlite_api.register("late@example.com")
    tokens = sqlite_api.login("late@example.com")
    with sqlite_api.runtime.uow() as uow:
        for row in uow.session.scalars(select(RefreshToken)).all():
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        uow.commit()
    assert sqlite_api.refresh(tokens["refresh_token"]).status_code == 401


def test_pruning_forgets_only_what_no_longer_counts(sqlite_api: Any) -> None:
    user = sqlite_api.register("prune@example.com")
    live = sqlite_api.login("prune@example.com")
    now = datetime.now(UTC)
    with sqlite_api.runtime.uow() as uow:
        uow.session.add_all(
            [
                LoginFailure(id=uuid.uuid4(), email="old@example.com", failed_at=now - timedelta(minutes=16)),
                LoginFailure(id=uuid.uuid4(), email="recent@example.com", failed_at=now - timedelta(minutes=1)),
                RefreshToken(
                    id=uuid.uuid4(),
                    token_hash="0" * 64,
                    family_id=uuid.uuid4(),
                    user_id=uuid.UUID(user["id"]),
                    issued_at=now - timedelta(days=15),
                    expires_at=now - timedelta(days=1),
                ),
            ]
        )
        uow.commit()
    with sqlite_api.runtime.uow() as uow:
        assert service.prune_expired(uow, login_window=timedelta(minutes=15)) == (1, 1)
    assert _failures(sqlite_api, "old@example.com") == 0
    assert _failures(sqlite_api, "recent@example.com") == 1
    assert sqlite_api.refresh(live["refresh_token"]).status_code == 200


def test_a_chunked_body_over_one_megabyte_is_413(sqlite_api: Any) -> None:
    def chunks() -> Any:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(12):
            yield b"x" * 100_000
        yield b'"}'

    response = sqlite_api.client.post("/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_the_openapi_document_lists_every_auth_route(sqlite_api: Any) -> None:
    paths = sqlite_api.client.get("/openapi.json").json()["paths"]
    for path in ("register", "login", "refresh", "logout", "me", "jwks.json"):
        assert f"/api/auth/{path}" in paths
