"""Whatever a client sends to an auth route, the answer is a 4xx problem document, never a 500, and a
refused registration creates nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from auth.models import User

pytestmark = pytest.mark.integration


@pytest.fixture
def api(shared_sqlite_api: Any) -> Any:
    return shared_sqlite_api


VALID_BODIES: dict[str, dict[str, Any]] = {
    "/api/auth/register": {"email": "new@example.com", "password": "long-enough-1", "full_name": "New User"},
    "/api/auth/login": {"email": "new@example.com", "password": "long-enough-1"},
    "/api/auth/refresh": {"refresh_token": "some-token"},
    "/api/auth/logout": {"refresh_token": "some-token"},
}
ROUTES = list(VALID_BODIES)


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def _users(api: Any) -> int:
    with api.runtime.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(User)) or 0)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("raw", [b'{"email": ', b"not json at all", b"", b"[1, 2]", b'"a string"', b"null"])
def test_malformed_json_is_422(api: Any, route: str, raw: bytes) -> None:
    response = api.client.post(route, content=raw, headers={"Content-Type": "application/json"})
    _assert_problem(response, 422)


@pytest.mark.parametrize("route", ROUTES)
def test_wrong_types_are_422(api: Any, route: str) -> None:
    for field in VALID_BODIES[route]:
        for wrong in (12345, ["a"], {"a": 1}, None, True):
            response = api.client.post(route, json={**VALID_BODIES[route], field: wrong})
            body = _assert_problem(response, 422)
            assert any(field in error["loc"] for error in body["errors"])


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_fields_are_422(api: Any, route: str) -> None:
    response = api.client.post(route, json={**VALID_BODIES[route], "role": "admin"})
    body = _assert_problem(response, 422)
    assert any("role" in error["loc"] for error in body["errors"])


@pytest.mark.parametrize("route", ROUTES)
def test_missing_fields_are_422(api: Any, route: str) -> None:
    _assert_problem(api.client.post(route, json={}), 422)


@pytest.mark.parametrize("route", ROUTES)
def test_bodies_over_one_megabyte_are_413(api: Any, route: str) -> None:
    huge = {**VALID_BODIES[route], "padding": "x" * 1_100_000}
    _assert_problem(api.client.post(route, json=huge), 413)


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_that_is_not_json_is_422(api: Any, route: str) -> None:
    response = api.client.post(route, content=b"email=a", headers={"Content-Type": "text/plain"})
    _assert_problem(response, 422)


def test_register_refusing_a_role_creates_nothing(api: Any) -> None:
    before = _users(api)
    body = {**VALID_BODIES["/api/auth/register"], "role": "admin"}
    _assert_problem(api.client.post("/api/auth/register", json=body), 422)
    assert _users(api) == before


@pytest.mark.parametrize("password", ["", "1234567", "short"])
def test_register_with_a_password_under_8_characters_is_422(api: Any, password: str) -> None:
    before = _users(api)
    body = {**VALID_BODIES["/api/auth/register"], "password": password}
    problem = _assert_problem(api.client.post("/api/auth/register", json=body), 422)
    assert any("password" in error["loc"] for error in problem["errors"])
    assert _users(api) == before


def test_register_with_exactly_8_characters_is_accepted(api: Any) -> None:
    user = api.register("eight@example.com", password="12345678")
    assert user["email"] == "eight@example.com"


@pytest.mark.parametrize(
    "email",
    ["", "plainaddress", "@example.com", "a@", "a@b", "a b@example.com", "a@@example.com", "x" * 320 + "@e.com"],
)
def test_register_with_an_invalid_email_is_422(api: Any, email: str) -> None:
    before = _users(api)
    body = {**VALID_BODIES["/api/auth/register"], "email": email}
    problem = _assert_problem(api.client.post("/api/auth/register", json=body), 422)
    assert any("email" in error["loc"] for error in problem["errors"])
    assert _users(api) == before


@pytest.mark.parametrize("full_name", ["", "   ", "n" * 201])
def test_register_with_a_blank_or_overlong_name_is_422(api: Any, full_name: str) -> None:
    body = {**VALID_BODIES["/api/auth/register"], "full_name": full_name}
    _assert_problem(api.client.post("/api/auth/register", json=body), 422)


def test_login_with_a_malformed_email_is_the_usual_401(api: Any) -> None:
    _assert_problem(api.try_login("not-an-email", "whatever-pass"), 401)


def test_unknown_or_garbage_refresh_tokens_are_401_and_logout_of_them_is_204(api: Any) -> None:
    _assert_problem(api.refresh("x" * 200), 401)
    _assert_problem(api.client.post("/api/auth/refresh", json={"refresh_token": "x" * 201}), 422)
    assert api.client.post("/api/auth/logout", json={"refresh_token": "never-issued"}).status_code == 204


def test_an_access_token_is_not_a_refresh_token(api: Any) -> None:
    api.register("mixup@example.com")
    tokens = api.login("mixup@example.com")
    _assert_problem(api.client.post("/api/auth/refresh", json={"refresh_token": tokens["access_token"][:200]}), 401)
