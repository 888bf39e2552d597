"""The public product API over HTTP, against PostgreSQL: what customers, admins and anonymous callers
see, and that bad input is a 4xx problem that changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from catalog.app import create_app
from catalog.models import Product, StockMovement
from catalog.settings import CatalogSettings
from shopkit import testing

pytestmark = pytest.mark.integration

Headers = dict[str, str]


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CatalogSettings]:
    # One database for the module: these tests create their own products and never count globally.
    with testing.fresh_database(services=("catalog",)) as url:
        yield CatalogSettings(database_url=url, var_dir=Path(tmp_path_factory.mktemp("catalog")), log_json=False)


@pytest.fixture(scope="module")
def client(module_settings: CatalogSettings) -> Iterator[TestClient]:
    with TestClient(create_app(module_settings)) as test_client:
        yield test_client


@pytest.fixture
def admin(module_settings: CatalogSettings, auth_headers: Callable[[Any, str], Headers]) -> Headers:
    return auth_headers(module_settings, "admin")


@pytest.fixture
def customer(module_settings: CatalogSettings, auth_headers: Callable[[Any, str], Headers]) -> Headers:
    return auth_headers(module_settings, "customer")


def new_product(client: TestClient, admin: Headers, **overrides: Any) -> dict[str, Any]:
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:8]}",
        "name": "Rice 5kg",
        "description": "Miniket rice",
        "price": "1250.00",
        "stock": 10,
        **overrides,
    }
    response = client.post("/api/products", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def ledger_total(client: TestClient, product_id: str) -> tuple[int, int]:
    """(stock, sum of the ledger's deltas) of a product, read from the database."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.uow() as uow:
        pid = uuid.UUID(product_id)
        stock = uow.session.scalar(select(Product.stock).where(Product.id == pid))
        total = uow.session.scalar(
            select(func.coalesce(func.sum(StockMovement.delta), 0)).where(StockMovement.product_id == pid)
        )
    return stock, total


def test_admin_creates_a_product_and_anyone_reads_it(client: TestClient, admin: Headers) -> None:
    created = new_product(client, admin, price="1250.5")
    assert created["price"] == "1250.50"
    assert created["currency"] == "BDT"
    assert created["stock"] == 10 and created["is_active"] is True
    assert created["created_at"].endswith(("+00:00", "Z"))

    response = client.get(f"/api/products/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert ledger_total(client, created["id"]) == (10, 10)


def test_duplicate_sku_is_a_conflict(client: TestClient, admin: Headers) -> None:
    created = new_product(client, admin)
    response = client.post(
        "/api/products", json={"sku": created["sku"], "name": "Other", "price": "1.00"}, headers=admin
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_update_changes_only_the_given_fields(client: TestClient, admin: Headers) -> None:
    created = new_product(client, admin)
    response = client.patch(
        f"/api/products/{created['id']}", json={"price": "99.90", "name": "Rice 2kg"}, headers=admin
    )
    assert response.status_code == 200
    updated = response.json()
    assert (updated["price"], updated["name"], updated["description"]) == ("99.90", "Rice 2kg", "Miniket rice")
    assert updated["updated_at"] > created["updated_at"]


def test_archived_product_is_hidden_from_customers_but_not_admins(
    client: TestClient, admin: Headers, customer: Headers
) -> None:
    created = new_product(client, admin)
    assert client.delete(f"/api/products/{created['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/products/{created['id']}").status_code == 404
    assert client.get(f"/api/products/{created['id']}", headers=customer).status_code == 404
    seen = client.get(f"/api/products/{created['id']}", headers=admin)
    assert seen.status_code == 200 and seen.json()["is_active"] is False
    listed = client.get("/api/products", params={"q": created["sku"]}).json()
    assert listed["total"] == 0
    # PATCH is_active brings it back.
    assert client.patch(f"/api/products/{created['id']}", json={"is_active": True}, headers=admin).status_code == 200
    assert client.get(f"/api/products/{created['id']}").status_code == 200


def test_missing_product_is_404(client: TestClient, admin: Headers) -> None:
    missing = uuid.uuid4()
    assert client.get(f"/api/products/{missing}").status_code == 404
    assert client.patch(f"/api/products/{missing}", json={"name": "x"}, headers=admin).status_code == 404
    assert client.delete(f"/api/products/{missing}", headers=admin).status_code == 404
    assert (
        client.post(
            f"/api/products/{missing}/stock-adjustments", json={"delta": 1, "reason": "x"}, headers=admin
        ).status_code
        == 404
    )
    assert client.get(f"/api/products/{missing}/stock-movements", headers=admin).status_code == 404


def test_stock_adjustments_are_recorded_in_the_ledger(client: TestClient, admin: Headers) -> None:
    created = new_product(client, admin, stock=3)
    response = client.post(
        f"/api/products/{created['id']}/stock-adjustments",
        json={"delta": 7, "reason": "delivery from supplier"},
        headers=admin,
    )
    assert response.status_code == 201
    movement = response.json()
    assert movement["delta"] == 7 and movement["cause"] == "adjustment" and movement["stock_after"] == 10
    assert movement["reason"] == "delivery from supplier" and movement["order_id"] is None
    removed = client.post(
        f"/api/products/{created['id']}/stock-adjustments", json={"delta": -4, "reason": "damaged"}, headers=admin
    )
    assert removed.status_code == 201 and removed.json()["stock_after"] == 6

    assert client.get(f"/api/products/{created['id']}").json()["stock"] == 6
    ledger = client.get(f"/api/products/{created['id']}/stock-movements", headers=admin).json()
    assert ledger["total"] == 3 and ledger["page"] == 1 and ledger["page_size"] == 20
    assert sorted((m["cause"], m["delta"]) for m in ledger["items"]) == [
        ("adjustment", -4),
        ("adjustment", 7),
        ("initial", 3),
    ]
    assert sum(m["delta"] for m in ledger["items"]) == 6
    page = client.get(
        f"/api/products/{created['id']}/stock-movements", params={"page": 2, "page_size": 2}, headers=admin
    ).json()
    assert page["total"] == 3 and len(page["items"]) == 1


def test_adjustment_below_zero_is_a_conflict_and_changes_nothing(client: TestClient, admin: Headers) -> None:
    created = new_product(client, admin, stock=2)
    response = client.post(
        f"/api/products/{created['id']}/stock-adjustments", json={"delta": -3, "reason": "stocktake"}, headers=admin
    )
    assert response.status_code == 409
    assert response.json()["status"] == 409
    assert ledger_total(client, created["id"]) == (2, 2)


def test_product_without_stock_has_no_ledger_row(client: TestClient, admin: Headers) -> None:
    created = new_product(client, admin, stock=0)
    ledger = client.get(f"/api/products/{created['id']}/stock-movements", headers=admin).json()
    assert ledger["total"] == 0 and ledger_total(client, created["id"]) == (0, 0)
