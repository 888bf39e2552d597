"""Every admin route refuses customers (403) and anonymous callers (401); bad input is a 4xx problem
and changes nothing. Runs on SQLite (all-in-one mode): the refusals happen before any SQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from shopkit.auth import SERVICE_TOKEN_HEADER
from shopkit.settings import DEV_INTERNAL_TOKEN

pytestmark = pytest.mark.integration

Headers = dict[str, str]


@pytest.fixture
def client(sqlite_settings: CatalogSettings) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings)) as test_client:
        yield test_client


@pytest.fixture
def admin(sqlite_settings: CatalogSettings, auth_headers: Callable[[Any, str], Headers]) -> Headers:
    return auth_headers(sqlite_settings, "admin")


@pytest.fixture
def customer(sqlite_settings: CatalogSettings, auth_headers: Callable[[Any, str], Headers]) -> Headers:
    return auth_headers(sqlite_settings, "customer")


@pytest.fixture
def product(client: TestClient, admin: Headers) -> dict[str, Any]:
    response = client.post(
        "/api/products", json={"sku": "RICE-5", "name": "Rice", "price": "10.00", "stock": 4}, headers=admin
    )
    assert response.status_code == 201
    return response.json()


def admin_calls(product_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", "/api/products", {"sku": "NEW-1", "name": "New", "price": "1.00"}),
        ("PATCH", f"/api/products/{product_id}", {"name": "Renamed"}),
        ("DELETE", f"/api/products/{product_id}", None),
        ("POST", f"/api/products/{product_id}/stock-adjustments", {"delta": 5, "reason": "delivery"}),
        ("GET", f"/api/products/{product_id}/stock-movements", None),
    ]


def assert_unchanged(client: TestClient, admin: Headers, product: dict[str, Any]) -> None:
    assert client.get(f"/api/products/{product['id']}", headers=admin).json() == product
    assert client.get("/api/products").json()["total"] == 1
    ledger = client.get(f"/api/products/{product['id']}/stock-movements", headers=admin).json()
    assert [(m["cause"], m["delta"]) for m in ledger["items"]] == [("initial", 4)]


@pytest.mark.parametrize("call", range(5))
def test_admin_routes_refuse_customers_and_anonymous_callers(
    client: TestClient, admin: Headers, customer: Headers, product: dict[str, Any], call: int
) -> None:
    method, path, body = admin_calls(product["id"])[call]
    anonymous = client.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    forbidden = client.request(method, path, json=body, headers=customer)
    assert forbidden.status_code == 403
    assert forbidden.json()["status"] == 403
    garbage = client.request(method, path, json=body, headers={"Authorization": "Bearer not-a-jwt"})
    assert garbage.status_code == 401
    assert_unchanged(client, admin, product)


def test_expired_token_is_refused(
    client: TestClient,
    sqlite_settings: CatalogSettings,
    product: dict[str, Any],
    admin: Headers,
    auth_headers: Callable[..., Headers],
) -> None:
    expired = auth_headers(sqlite_settings, "admin", expires_in=timedelta(seconds=-60))
    response = client.delete(f"/api/products/{product['id']}", headers=expired)
    assert response.status_code == 401
    assert_unchanged(client, admin, product)


BAD_CREATES = [
    {"sku": "X-1", "name": "X", "price": "-1.00"},
    {"sku": "X-1", "name": "X", "price": "0"},
    {"sku": "X-1", "name": "X", "price": "1.001"},
    {"sku": "X-1", "name": "X", "price": "100000000000.00"},
    {"sku": "X-1", "name": "X", "price": "abc"},
    {"sku": "X-1", "name": "X", "price": "1.00", "stock": -1},
    {"sku": "X-1", "name": "X", "price": "1.00", "stock": 10**12},
    {"sku": "X-1", "name": "X", "price": "1.00", "currency": "taka"},
    {"sku": "X-1", "name": "", "price": "1.00"},
    {"sku": "", "name": "X", "price": "1.00"},
    {"sku": "has space", "name": "X", "price": "1.00"},
    {"sku": "X-1", "name": "X", "price": "1.00", "is_active": False},
    {"sku": "X-1", "name": "X", "price": "1.00", "surprise": 1},
    {"name": "X", "price": "1.00"},
    [],
]


@pytest.mark.parametrize("body", BAD_CREATES)
def test_invalid_product_is_422_and_not_created(
    client: TestClient, admin: Headers, product: dict[str, Any], body: Any
) -> None:
    response = client.post("/api/products", json=body, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"]
    assert_unchanged(client, admin, product)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"price": "-5"}),
        ("PATCH", "", {"name": None}),
        ("PATCH", "", {"price": None}),
        ("PATCH", "", {"stock": 100}),
        ("PATCH", "", {"sku": "OTHER"}),
        ("PATCH", "", {"is_active": "maybe"}),
        ("POST", "/stock-adjustments", {"delta": 0, "reason": "nothing"}),
        ("POST", "/stock-adjustments", {"delta": 1}),
        ("POST", "/stock-adjustments", {"delta": 1, "reason": ""}),
        ("POST", "/stock-adjustments", {"delta": "lots", "reason": "x"}),
        ("POST", "/stock-adjustments", {"delta": 1.5, "reason": "x"}),
        ("POST", "/stock-adjustments", {"delta": 1, "reason": "x", "cause": "release"}),
    ],
)
def test_invalid_change_is_422_and_changes_nothing(
    client: TestClient, admin: Headers, product: dict[str, Any], method: str, suffix: str, body: Any
) -> None:
    response = client.request(method, f"/api/products/{product['id']}{suffix}", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_unchanged(client, admin, product)


@pytest.mark.parametrize("path", ["", "/stock-adjustments"])
def test_malformed_json_is_a_problem_and_changes_nothing(
    client: TestClient, admin: Headers, product: dict[str, Any], path: str
) -> None:
    target = "/api/products" if not path else f"/api/products/{product['id']}{path}"
    response = client.post(
        target, content=b'{"sku": "X-1", "name": ', headers={**admin, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_unchanged(client, admin, product)


def test_below_zero_adjustment_is_a_conflict(client: TestClient, admin: Headers, product: dict[str, Any]) -> None:
    response = client.post(
        f"/api/products/{product['id']}/stock-adjustments", json={"delta": -5, "reason": "stocktake"}, headers=admin
    )
    assert response.status_code == 409
    assert_unchanged(client, admin, product)


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 0},
        {"page_size": 1000},
        {"page_size": "ten"},
        {"page": 0},
        {"sort": "stock"},
        {"sort": "price; DROP TABLE products"},
        {"min_price": "-1"},
        {"min_price": "abc"},
        {"min_price": "50", "max_price": "10"},
        {"in_stock": "perhaps"},
        {"q": "x" * 201},
    ],
)
def test_bad_listing_query_is_422(
    client: TestClient, admin: Headers, product: dict[str, Any], params: dict[str, Any]
) -> None:
    response = client.get("/api/products", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_unchanged(client, admin, product)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/stock-adjustments"), ("GET", "/stock-movements")],
)
def test_non_uuid_id_is_422(
    client: TestClient, admin: Headers, product: dict[str, Any], method: str, suffix: str
) -> None:
    body = {"delta": 1, "reason": "x"} if method == "POST" else ({"name": "x"} if method == "PATCH" else None)
    response = client.request(method, f"/api/products/not-a-uuid{suffix}", json=body, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_unchanged(client, admin, product)


def test_stock_movements_paging_is_validated(client: TestClient, admin: Headers, product: dict[str, Any]) -> None:
    for params in ({"page_size": 0}, {"page_size": 101}, {"page": 0}):
        response = client.get(f"/api/products/{product['id']}/stock-movements", params=params, headers=admin)
        assert response.status_code == 422


@pytest.mark.parametrize(
    "body", [{"ids": []}, {"ids": ["nope"]}, {"ids": [str(uuid.uuid4())] * 101}, {"ids": [], "extra": 1}, {}]
)
def test_bad_internal_lookup_is_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/internal/products/lookup", json=body, headers={SERVICE_TOKEN_HEADER: DEV_INTERNAL_TOKEN})
    assert response.status_code == 422
