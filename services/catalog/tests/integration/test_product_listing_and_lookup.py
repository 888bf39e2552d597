"""Listing (search, price range, stock filter, sorts, paging) and the internal lookup for orders, on
PostgreSQL (full-text index) and on SQLite (LIKE)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from catalog.app import create_app
from catalog.settings import CatalogSettings
from shopkit import testing
from shopkit.auth import SERVICE_TOKEN_HEADER
from shopkit.settings import DEV_INTERNAL_TOKEN

SERVICE = {SERVICE_TOKEN_HEADER: DEV_INTERNAL_TOKEN}

pytestmark = pytest.mark.integration

PRODUCTS = [
    {
        "sku": "RICE-MINIKET-5",
        "name": "Miniket Rice 5kg",
        "description": "Premium parboiled grain",
        "price": "750.00",
        "stock": 12,
    },
    {"sku": "DAL-MOSUR-1", "name": "Mosur Dal 1kg", "description": "Red lentils", "price": "140.00", "stock": 0},
    {
        "sku": "OIL-SOY-5",
        "name": "Soybean Oil 5L",
        "description": "Fortified cooking oil",
        "price": "920.50",
        "stock": 3,
    },
    {
        "sku": "TEA-1",
        "name": "Assam Tea",
        "description": "Strong black tea, great with rice snacks",
        "price": "320.00",
        "stock": 40,
    },
    {"sku": "GONE-1", "name": "Archived Rice", "description": "no longer sold", "price": "10.00", "stock": 5},
]


@dataclass
class Catalog:
    client: TestClient
    settings: CatalogSettings
    admin: dict[str, str]
    ids: dict[str, str]  # sku -> id


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def catalog(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_headers: Callable[..., dict[str, str]],
) -> Iterator[Catalog]:
    database = testing.fresh_database(services=("catalog",)) if request.param == "postgresql" else nullcontext()
    with database as url:
        settings = CatalogSettings(database_url=url, var_dir=tmp_path_factory.mktemp("catalog"), log_json=False)
        with TestClient(create_app(settings)) as client:
            admin = auth_headers(settings, "admin")
            ids = {}
            for body in PRODUCTS:
                response = client.post("/api/products", json=body, headers=admin)
                assert response.status_code == 201
                ids[body["sku"]] = response.json()["id"]
            assert client.delete(f"/api/products/{ids['GONE-1']}", headers=admin).status_code == 204
            yield Catalog(client, settings, admin, ids)


def skus(catalog: Catalog, **params: Any) -> list[str]:
    response = catalog.client.get("/api/products", params=params)
    assert response.status_code == 200, response.text
    return [item["sku"] for item in response.json()["items"]]


def test_default_listing_is_active_products_newest_first(catalog: Catalog) -> None:
    page = catalog.client.get("/api/products").json()
    assert page["total"] == 4 and page["page"] == 1 and page["page_size"] == 20
    assert [item["sku"] for item in page["items"]] == ["TEA-1", "OIL-SOY-5", "DAL-MOSUR-1", "RICE-MINIKET-5"]
    assert page["items"][1]["price"] == "920.50"


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("rice", {"RICE-MINIKET-5", "TEA-1"}),  # name of one, description of the other
        ("RICE", {"RICE-MINIKET-5", "TEA-1"}),
        ("lentil", {"DAL-MOSUR-1"}),  # a word's beginning
        ("OIL-SOY-5", {"OIL-SOY-5"}),  # a whole sku
        ("black tea", {"TEA-1"}),
        ("tea rice", {"TEA-1"}),  # every word must match
        ("caviar", set()),
        ("100%_", set()),  # LIKE wildcards and tsquery syntax are matched literally, never interpreted
        ("'&|!:*()", set()),
    ],
)
def test_search_matches_name_sku_and_description(catalog: Catalog, q: str, expected: set[str]) -> None:
    assert set(skus(catalog, q=q)) == expected


def test_price_range_and_stock_filters(catalog: Catalog) -> None:
    assert set(skus(catalog, min_price="300", max_price="800")) == {"RICE-MINIKET-5", "TEA-1"}
    assert set(skus(catalog, min_price="920.50")) == {"OIL-SOY-5"}
    assert set(skus(catalog, in_stock="true")) == {"RICE-MINIKET-5", "OIL-SOY-5", "TEA-1"}
    assert skus(catalog, in_stock="false") == ["DAL-MOSUR-1"]
    assert skus(catalog, q="rice", in_stock="true", sort="price") == ["TEA-1", "RICE-MINIKET-5"]


def test_sorts(catalog: Catalog) -> None:
    assert skus(catalog, sort="price") == ["DAL-MOSUR-1", "TEA-1", "RICE-MINIKET-5", "OIL-SOY-5"]
    assert skus(catalog, sort="-price") == ["OIL-SOY-5", "RICE-MINIKET-5", "TEA-1", "DAL-MOSUR-1"]
    assert skus(catalog, sort="name") == ["TEA-1", "RICE-MINIKET-5", "DAL-MOSUR-1", "OIL-SOY-5"]


def test_paging(catalog: Catalog) -> None:
    first = catalog.client.get("/api/products", params={"sort": "price", "page_size": 3}).json()
    second = catalog.client.get("/api/products", params={"sort": "price", "page_size": 3, "page": 2}).json()
    assert (first["total"], second["total"]) == (4, 4)
    assert [i["sku"] for i in first["items"]] == ["DAL-MOSUR-1", "TEA-1", "RICE-MINIKET-5"]
    assert [i["sku"] for i in second["items"]] == ["OIL-SOY-5"]
    assert catalog.client.get("/api/products", params={"page": 9}).json()["items"] == []


def test_internal_lookup_returns_known_products_including_archived(catalog: Catalog) -> None:
    # The answer is contracts.internal.ProductLookupResponse: each product as its ProductChanged says.
    wanted = [catalog.ids["OIL-SOY-5"], catalog.ids["GONE-1"], str(uuid.uuid4())]
    response = catalog.client.post("/internal/products/lookup", json={"ids": wanted}, headers=SERVICE)
    assert response.status_code == 200
    items = {item["sku"]: item for item in response.json()["products"]}
    assert set(items) == {"OIL-SOY-5", "GONE-1"}
    assert items["OIL-SOY-5"] == {
        "product_id": catalog.ids["OIL-SOY-5"],
        "sku": "OIL-SOY-5",
        "name": "Soybean Oil 5L",
        "price": "920.50",
        "currency": "BDT",
        "stock": 3,
        "is_active": True,
        "version": 1,
        "category": None,
        "images": [],
    }
    assert items["GONE-1"]["is_active"] is False
    assert items["GONE-1"]["version"] == 2  # created, then archived


def test_search_uses_the_full_text_index_on_postgresql(catalog: Catalog) -> None:
    runtime = catalog.client.app.state.runtime  # type: ignore[attr-defined]
    if runtime.db.is_sqlite:
        pytest.skip("SQLite searches with LIKE, there is no index to use")
    from sqlalchemy import select

    from catalog.models import Product
    from catalog.service import _matches

    query = select(Product.id).where(_matches("rice tea", "postgresql"))
    with runtime.db.engine.connect() as connection:
        compiled = query.compile(dialect=connection.dialect)
        # Four rows would never use an index on their own; forbid the sequential scan to see if it can.
        connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params))
    assert "ix_products_search" in plan, plan


def test_internal_lookup_needs_the_service_credential(catalog: Catalog) -> None:
    body = {"ids": [catalog.ids["OIL-SOY-5"]]}
    for headers in ({}, {SERVICE_TOKEN_HEADER: "guessed"}, {SERVICE_TOKEN_HEADER: ""}):
        response = catalog.client.post("/internal/products/lookup", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert "Soybean" not in response.text
