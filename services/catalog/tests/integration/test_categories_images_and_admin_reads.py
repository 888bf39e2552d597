"""Categories and images on products (create, patch, read, filter, GET /api/categories), the admins'
listing of every product for the audit, and bad input on each of these routes: a 422 problem that
changes nothing, never a 500. On PostgreSQL and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from shopkit import testing
from shopkit.auth import SERVICE_TOKEN_HEADER
from shopkit.settings import DEV_INTERNAL_TOKEN

pytestmark = pytest.mark.integration

Headers = dict[str, str]
IMAGE = "https://cdn.example.com/p/rice.jpg"


@dataclass
class Shop:
    client: TestClient
    admin: Headers
    customer: Headers


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def shop(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_headers: Callable[..., Headers],
) -> Iterator[Shop]:
    database = testing.fresh_database(services=("catalog",)) if request.param == "postgresql" else nullcontext()
    with database as url:
        settings = CatalogSettings(database_url=url, var_dir=tmp_path_factory.mktemp("catalog"), log_json=False)
        with TestClient(create_app(settings)) as client:
            yield Shop(client, auth_headers(settings, "admin"), auth_headers(settings, "customer"))


def create(shop: Shop, **body: Any) -> dict[str, Any]:
    body = {"sku": f"SKU-{uuid.uuid4().hex[:8]}", "name": "Rice", "price": "10.00", "stock": 1, **body}
    response = shop.client.post("/api/products", json=body, headers=shop.admin)
    assert response.status_code == 201, response.text
    return response.json()


def categories(shop: Shop) -> dict[str, int]:
    response = shop.client.get("/api/categories")
    assert response.status_code == 200
    return {c["slug"]: c["product_count"] for c in response.json()}


def test_category_and_images_are_kept_and_shown(shop: Shop) -> None:
    images = [IMAGE, "https://cdn.example.com/p/rice-back.jpg?w=640"]
    created = create(shop, category="rice-grains", images=images)
    assert (created["category"], created["images"]) == ("rice-grains", images)
    assert shop.client.get(f"/api/products/{created['id']}").json() == created

    plain = create(shop)
    assert (plain["category"], plain["images"]) == (None, [])

    patched = shop.client.patch(
        f"/api/products/{created['id']}", json={"category": "staples", "images": [IMAGE]}, headers=shop.admin
    )
    assert patched.status_code == 200
    assert (patched.json()["category"], patched.json()["images"]) == ("staples", [IMAGE])
    cleared = shop.client.patch(
        f"/api/products/{created['id']}", json={"category": None, "images": []}, headers=shop.admin
    ).json()
    assert (cleared["category"], cleared["images"]) == (None, [])


def test_listing_filters_by_category_and_categories_count_active_products(shop: Shop) -> None:
    before = categories(shop)
    slug = f"tea-{uuid.uuid4().hex[:6]}"
    black, green, gone = create(shop, category=slug), create(shop, category=slug), create(shop, category=slug)
    assert shop.client.delete(f"/api/products/{gone['id']}", headers=shop.admin).status_code == 204
    create(shop, category=f"{slug}-other")

    listed = shop.client.get("/api/products", params={"category": slug}).json()
    assert listed["total"] == 2
    assert {item["id"] for item in listed["items"]} == {black["id"], green["id"]}
    assert shop.client.get("/api/products", params={"category": "no-such-thing"}).json()["total"] == 0

    after = categories(shop)
    assert after[slug] == 2 and after[f"{slug}-other"] == 1
    assert {k: v for k, v in after.items() if not k.startswith(slug)} == before
    assert list(after) == sorted(after)  # by slug
    # A category whose products are all archived is not listed.
    for product in (black, green):
        shop.client.delete(f"/api/products/{product['id']}", headers=shop.admin)
    assert slug not in categories(shop)


def test_admins_list_every_product_archived_ones_included(shop: Shop) -> None:
    slug = f"audit-{uuid.uuid4().hex[:6]}"
    active, archived = create(shop, category=slug), create(shop, category=slug)
    shop.client.delete(f"/api/products/{archived['id']}", headers=shop.admin)

    everything = shop.client.get(
        "/api/products", params={"include_archived": "true", "category": slug}, headers=shop.admin
    ).json()
    assert {(item["id"], item["is_active"]) for item in everything["items"]} == {
        (active["id"], True),
        (archived["id"], False),
    }
    assert everything["total"] == 2
    # Paging walks every product exactly once, in a stable order.
    total = shop.client.get("/api/products", params={"include_archived": "true"}, headers=shop.admin).json()["total"]
    seen = []
    for page in range(1, total // 3 + 2):
        seen += [
            item["id"]
            for item in shop.client.get(
                "/api/products",
                params={"include_archived": "true", "page": page, "page_size": 3, "sort": "name"},
                headers=shop.admin,
            ).json()["items"]
        ]
    assert len(seen) == len(set(seen)) == total


def test_only_admins_may_list_archived_products(shop: Shop) -> None:
    anonymous = shop.client.get("/api/products", params={"include_archived": "true"})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    customer = shop.client.get("/api/products", params={"include_archived": "true"}, headers=shop.customer)
    assert customer.status_code == 403
    assert customer.json()["status"] == 403
    # Asking for active products only is anyone's right.
    assert shop.client.get("/api/products", params={"include_archived": "false"}).status_code == 200


BAD_PRODUCT_FIELDS: list[dict[str, Any]] = [
    {"category": "Tea"},
    {"category": "tea leaves"},
    {"category": "tea_leaves"},
    {"category": ""},
    {"category": "x" * 65},
    {"category": "tea\n"},
    {"category": 7},
    {"category": ["tea"]},
    {"images": "https://cdn.example.com/a.jpg"},
    {"images": ["javascript:alert(1)"]},
    {"images": ["http://cdn.example.com/a.jpg"]},
    {"images": ["data:image/png;base64,iVBORw0KGgo="]},
    {"images": ['https://cdn.example.com/a.jpg"><script>alert(1)</script>']},
    {"images": ["https://user:pw@cdn.example.com/a.jpg"]},
    {"images": ["https://cdn.example.com/" + "a" * 2048]},
    {"images": [IMAGE] * 11},
    {"images": [None]},
    {"images": [{"url": IMAGE}]},
]


@pytest.mark.parametrize("fields", BAD_PRODUCT_FIELDS)
def test_bad_category_or_images_are_refused_on_create_and_patch(shop: Shop, fields: dict[str, Any]) -> None:
    product = create(shop, category="kept", images=[IMAGE])
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    created = shop.client.post(
        "/api/products", json={"sku": sku, "name": "X", "price": "1.00", **fields}, headers=shop.admin
    )
    assert created.status_code == 422, created.text
    assert created.headers["content-type"].startswith("application/problem+json")
    assert created.json()["errors"]
    assert shop.client.get("/api/products", params={"q": sku}).json()["total"] == 0

    patched = shop.client.patch(f"/api/products/{product['id']}", json=fields, headers=shop.admin)
    assert patched.status_code == 422, patched.text
    assert shop.client.get(f"/api/products/{product['id']}").json() == product


def test_images_cannot_be_patched_to_null(shop: Shop) -> None:
    product = create(shop, images=[IMAGE])
    response = shop.client.patch(f"/api/products/{product['id']}", json={"images": None}, headers=shop.admin)
    assert response.status_code == 422
    assert shop.client.get(f"/api/products/{product['id']}").json()["images"] == [IMAGE]


@pytest.mark.parametrize(
    "params",
    [
        {"category": "Not A Slug"},
        {"category": "x" * 65},
        {"category": ""},
        {"include_archived": "perhaps"},
        {"include_archived": "true", "page": "0"},
    ],
)
def test_bad_listing_queries_are_422_problems(shop: Shop, params: dict[str, str]) -> None:
    response = shop.client.get("/api/products", params=params, headers=shop.admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"ids": ["not-a-uuid"]},
        {"ids": [str(uuid.uuid4()) for _ in range(101)]},
        {"ids": str(uuid.uuid4())},
        {"ids": [str(uuid.uuid4())], "more": 1},
        [str(uuid.uuid4())],
    ],
)
def test_bad_lookups_are_422_problems(shop: Shop, body: Any) -> None:
    response = shop.client.post(
        "/internal/products/lookup", json=body, headers={SERVICE_TOKEN_HEADER: DEV_INTERNAL_TOKEN}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_lookup_carries_category_images_and_the_current_version(shop: Shop) -> None:
    product = create(shop, category="oil", images=[IMAGE])
    shop.client.patch(f"/api/products/{product['id']}", json={"name": "Mustard Oil"}, headers=shop.admin)
    response = shop.client.post(
        "/internal/products/lookup",
        json={"ids": [product["id"], product["id"]]},
        headers={SERVICE_TOKEN_HEADER: DEV_INTERNAL_TOKEN},
    )
    [found] = response.json()["products"]
    assert (found["name"], found["category"], found["images"], found["version"]) == ("Mustard Oil", "oil", [IMAGE], 2)
