"""The main auth flows on real PostgreSQL, through the public API."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from auth.app import create_app
from auth.models import LoginFailure, RefreshToken, User
from shopkit.testing import ServerThread, local_http

pytestmark = pytest.mark.integration


def _user_row(api: Any, email: str) -> User | None:
    with api.runtime.uow() as uow:
        return uow.session.scalar(select(User).where(User.email == email))


def test_register_login_me_refresh_logout_and_jwks_round_trip(pg_api: Any) -> None:
    user = pg_api.register("Nadia@Example.COM", full_name="Nadia Islam")
    assert user["email"] == "nadia@example.com"
    assert user["role"] == "customer"
    assert user["full_name"] == "Nadia Islam"
    assert set(user) == {"id", "email", "full_name", "role", "created_at"}

    tokens = pg_api.login("NADIA@example.com")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = pg_api.me(tokens["access_token"])
    assert me.status_code == 200
    assert me.json() == user

    # The token verifies against the published key with the kit's verifier, as every service does it.
    jwks = pg_api.client.get("/api/auth/jwks.json").json()
    assert jwks == {"keys": [pg_api.runtime.verifier.keys.jwk()]}
    principal = pg_api.runtime.verifier.verify(tokens["access_token"])
    assert str(principal.user_id) == user["id"] and principal.role == "customer"

    rotated = pg_api.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200
    pair = rotated.json()
    assert pair["refresh_token"] != tokens["refresh_token"]
    assert pg_api.me(pair["access_token"]).json()["id"] == user["id"]

    logout = pg_api.client.post("/api/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert logout.status_code == 204
    assert logout.content == b""
    after = pg_api.refresh(pair["refresh_token"])
    assert after.status_code == 401
    assert after.headers["content-type"] == "application/problem+json"


def test_duplicate_email_is_409_whatever_its_case(pg_api: Any) -> None:
    pg_api.register("karim@example.com")
    response = pg_api.client.post(
        "/api/auth/register", json={"email": " Karim@Example.com ", "password": "another-pass", "full_name": "K"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    with pg_api.runtime.uow() as uow:
        assert len(uow.session.scalars(select(User).where(User.email == "karim@example.com")).all()) == 1


def test_wrong_password_and_unknown_email_get_the_same_401(pg_api: Any) -> None:
    pg_api.register("salma@example.com")
    wrong = pg_api.try_login("salma@example.com", "not the password")
    unknown = pg_api.try_login("nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["content-type"] == unknown.headers["content-type"] == "application/problem+json"


def test_sixth_failed_login_is_429_until_the_window_passes_and_other_accounts_are_unaffected(
    pg_api: Any,
) -> None:
    pg_api.register("target@example.com")
    pg_api.register("bystander@example.com")
    for _ in range(5):
        assert pg_api.try_login("target@example.com", "guess-guess").status_code == 401

    locked = pg_api.try_login("target@example.com", "guess-guess")
    assert locked.status_code == 429
    assert locked.headers["content-type"] == "application/problem+json"
    assert 1 <= int(locked.headers["Retry-After"]) <= 900
    # Locked whatever the password: the right one does not get through either.
    assert pg_api.try_login("target@example.com").status_code == 429
    assert pg_api.try_login("TARGET@example.com").status_code == 429
    pg_api.login("bystander@example.com")

    with pg_api.runtime.uow() as uow:  # fifteen minutes pass
        uow.session.execute(update(LoginFailure).values(failed_at=LoginFailure.failed_at - timedelta(minutes=16)))
        uow.commit()
    pg_api.login("target@example.com")


def test_parallel_guesses_cannot_slip_past_the_failure_count(pg_api: Any, make_settings: Any, pg_url: str) -> None:
    pg_api.register("race@example.com")
    with ServerThread(create_app(make_settings(database_url=pg_url))) as server:  # a second replica
        urls = [pg_api.client, server.url] * 5
        # One client behind the gateway, whichever replica the gateway picks.
        client = {"X-Forwarded-For": "203.0.113.7"}

        def attempt(target: Any) -> int:
            body = {"email": "race@example.com", "password": "guess-guess"}
            if isinstance(target, str):
                return local_http.post(f"{target}/api/auth/login", json=body, headers=client, timeout=30).status_code
            return int(target.post("/api/auth/login", json=body, headers=client).status_code)

        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = sorted(pool.map(attempt, urls))
    assert statuses == [401] * 5 + [429] * 5


def test_refresh_tokens_rotate_and_a_replay_revokes_the_family(pg_api: Any) -> None:
    pg_api.register("rotate@example.com")
    first = pg_api.login("rotate@example.com")
    second = pg_api.refresh(first["refresh_token"]).json()
    third = pg_api.refresh(second["refresh_token"]).json()
    other_session = pg_api.login("rotate@example.com")

    replay = pg_api.refresh(first["refresh_token"])
    assert replay.status_code == 401
    assert replay.headers["content-type"] == "application/problem+json"
    # The newest token of that family is dead too; another login's family is not.
    assert pg_api.refresh(third["refresh_token"]).status_code == 401
    assert pg_api.refresh(other_session["refresh_token"]).status_code == 200

    with pg_api.runtime.uow() as uow:
        rows = uow.session.scalars(select(RefreshToken)).all()
        stored = {row.token_hash for row in rows}
    for token in (first, second, third, other_session):
        assert token["refresh_token"] not in stored
    assert len(rows) == 5  # 3 of the first family, the other login and its rotation


def test_passwords_are_stored_as_argon2_hashes_and_never_logged(pg_api: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Very-Secret-Pass-77"
    pg_api.register("hash@example.com", password=secret)
    pg_api.login("hash@example.com", secret)
    pg_api.try_login("hash@example.com", secret + "x")
    row = _user_row(pg_api, "hash@example.com")
    assert row is not None
    assert row.password_hash.startswith("$argon2id$")
    assert secret not in row.password_hash
    assert any(r.getMessage() == "login failed" for r in caplog.records)  # the capture works
    assert secret not in caplog.text
    assert secret not in repr([vars(r) for r in caplog.records])


def test_admin_is_ensured_at_start_up_and_can_log_in(pg_api: Any) -> None:
    row = _user_row(pg_api, pg_api.admin_email)
    assert row is not None and row.role == "admin"
    tokens = pg_api.login(pg_api.admin_email, pg_api.admin_password)
    assert pg_api.runtime.verifier.verify(tokens["access_token"]).role == "admin"


def test_start_up_promotes_an_existing_customer_to_admin(pg_api: Any, make_settings: Any, pg_url: str) -> None:
    pg_api.register("boss@example.com")
    settings = make_settings(database_url=pg_url, admin_email="Boss@example.com", admin_password="whatever-123")
    with TestClient(create_app(settings)):
        pass
    row = _user_row(pg_api, "boss@example.com")
    assert row is not None and row.role == "admin"
    # Promotion keeps the password the user chose.
    assert pg_api.runtime.verifier.verify(pg_api.login("boss@example.com")["access_token"]).role == "admin"


def test_create_admin_command_creates_an_admin(pg_api: Any, pg_url: str, tmp_path: Any) -> None:
    env = {**os.environ, "SHOP_DATABASE_URL": pg_url, "SHOP_VAR_DIR": str(tmp_path), "SHOP_LOG_JSON": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "auth.create_admin", "--email", "Ops@Example.com", "--password", "Ops-Pass-1234"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Ops-Pass-1234" not in done.stdout + done.stderr
    row = _user_row(pg_api, "ops@example.com")
    assert row is not None and row.role == "admin"
    pg_api.login("ops@example.com", "Ops-Pass-1234")


def test_two_replicas_refreshing_one_token_at_once_rotate_once_and_revoke_the_family(
    pg_api: Any, make_settings: Any, pg_url: str
) -> None:
    pg_api.register("twins@example.com")
    tokens = pg_api.login("twins@example.com")
    body = {"refresh_token": tokens["refresh_token"]}
    with ServerThread(create_app(make_settings(database_url=pg_url))) as server:
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(
                pool.map(
                    lambda send: send(),
                    [
                        lambda: pg_api.client.post("/api/auth/refresh", json=body),
                        lambda: local_http.post(f"{server.url}/api/auth/refresh", json=body, timeout=30),
                    ],
                )
            )
    assert sorted(a.status_code for a in answers) == [200, 401]
    # The second use of the token is a replay: the pair the first one got is revoked with its family.
    winner = next(a for a in answers if a.status_code == 200).json()
    assert pg_api.refresh(winner["refresh_token"]).status_code == 401
