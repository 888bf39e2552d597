"""The product view: fed by ProductChanged through the kit's dispatcher (newest version wins, under
redelivery and concurrency), read by placement without asking the catalog, unknown products read
through once, and placement of known products while the catalog is down."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from contracts import Envelope, ProductChanged, new_envelope
from orders.app import create_app
from shopkit.testing import ServerThread, free_port, local_http

pytestmark = pytest.mark.integration


def change(product_id: uuid.UUID, version: int, *, stock: int = 10, price: str = "10.00", active: bool = True):
    return ProductChanged(
        product_id=product_id,
        sku=f"SKU-{str(product_id)[:8]}",
        name=f"Product v{version}",
        price=Decimal(price),
        currency="BDT",
        is_active=active,
        stock=stock,
        version=version,
    )


def env(data: ProductChanged) -> Envelope:
    return new_envelope(data, producer="catalog", correlation_id=data.product_id)


@pytest.fixture
def view(db_rows):
    def _view() -> dict[str, tuple]:
        return {
            str(r.product_id): (r.version, r.name, r.stock)
            for r in db_rows("SELECT product_id, version, name, stock FROM orders.products")
        }

    return _view


def one_item(product_id: uuid.UUID, quantity: int = 1, **extra) -> dict:
    return {"items": [{"product_id": str(product_id), "quantity": quantity}], **extra}


def test_a_batch_keeps_the_newest_version_of_each_product_and_older_ones_never_win(client, view):
    dispatcher = client.app.state.runtime.dispatcher
    a, b = uuid.uuid4(), uuid.uuid4()
    batch = [env(change(a, 2, stock=2)), env(change(b, 1)), env(change(a, 5, stock=5)), env(change(a, 3, stock=3))]
    assert dispatcher.handle_batch(batch) == [None] * 4
    assert view() == {str(a): (5, "Product v5", 5), str(b): (1, "Product v1", 10)}

    # Older versions arriving late, under new event ids or redelivered, change nothing.
    late = [env(change(a, 4, stock=4)), env(change(b, 1, stock=99)), batch[2]]
    assert dispatcher.handle_batch(late) == [None] * 3
    assert view() == {str(a): (5, "Product v5", 5), str(b): (1, "Product v1", 10)}
    dispatcher.handle(env(change(b, 2, stock=7)))
    assert view()[str(b)] == (2, "Product v2", 7)


def test_concurrent_batches_in_any_order_end_at_the_newest_version(client, view):
    dispatcher = client.app.state.runtime.dispatcher
    products = [uuid.uuid4() for _ in range(6)]
    events = [env(change(p, v, stock=v)) for p in products for v in range(1, 31)]
    random.Random(7).shuffle(events)
    chunks = [events[i::8] for i in range(8)]  # eight batches, each touching every product

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [o for chunk in pool.map(dispatcher.handle_batch, chunks) for o in chunk]

    assert outcomes == [None] * len(events)  # no deadlock, no failed batch
    assert view() == {str(p): (30, "Product v30", 30) for p in products}


def test_placement_reads_the_view_and_does_not_ask_the_catalog(client, catalog, headers):
    product = uuid.uuid4()
    client.app.state.runtime.dispatcher.handle(env(change(product, 3, price="12.50", stock=4)))

    response = client.post("/api/orders", json=one_item(product, 2), headers=headers(uuid.uuid4()))

    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["total_amount"], order["items"][0]["name"], order["items"][0]["unit_price"]) == (
        "25.00",
        "Product v3",
        "12.50",
    )
    assert catalog.calls == []


def test_the_views_stock_is_advisory_but_placement_obeys_it(client, catalog, headers, db_rows):
    product = uuid.uuid4()
    client.app.state.runtime.dispatcher.handle(env(change(product, 1, stock=1)))
    response = client.post("/api/orders", json=one_item(product, 2), headers=headers(uuid.uuid4()))
    assert response.status_code == 409
    assert response.json()["shortages"] == [{"product_id": str(product), "requested": 2, "available": 1}]
    client.app.state.runtime.dispatcher.handle(env(change(product, 2, active=False)))
    archived = client.post("/api/orders", json=one_item(product, 1), headers=headers(uuid.uuid4()))
    assert archived.status_code == 422 and archived.json()["product_ids"] == [str(product)]
    assert catalog.calls == []
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 0


def test_an_unknown_product_is_read_through_once_and_stored_with_its_version(client, catalog, headers, view):
    product = catalog.add("8.00", stock=5)
    for _ in range(3):
        assert client.post("/api/orders", json=one_item(product), headers=headers(uuid.uuid4())).status_code == 201
    assert catalog.calls == [[str(product)]]
    assert view()[str(product)] == (1, "Product 1", 5)

    # A later change reaches the view as an event (the fake catalog publishes it), not by asking.
    catalog.products[product].price = Decimal("9.00")
    response = client.post("/api/orders", json=one_item(product), headers=headers(uuid.uuid4()))
    assert response.json()["total_amount"] == "9.00"
    assert view()[str(product)][0] == 2 and len(catalog.calls) == 1


def test_concurrent_placements_of_an_unknown_product_share_one_lookup(settings, catalog, headers, db_rows):
    catalog.delay = 0.5
    product = catalog.add("3.00", stock=100)
    with ServerThread(create_app(settings, catalog_app=catalog.app)) as server:

        def post(_: int) -> httpx.Response:
            return local_http.post(
                f"{server.url}/api/orders", json=one_item(product), headers=headers(uuid.uuid4()), timeout=30
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(post, range(8)))

    assert [r.status_code for r in responses] == [201] * 8
    assert len(catalog.calls) == 1
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 8


def test_known_products_are_placed_while_the_catalog_is_down(settings, headers, db_rows):
    down = settings.model_copy(update={"catalog_url": f"http://127.0.0.1:{free_port()}"})
    known, unknown = uuid.uuid4(), uuid.uuid4()
    with TestClient(create_app(down)) as client:
        client.app.state.runtime.dispatcher.handle(env(change(known, 1)))
        placed = client.post("/api/orders", json=one_item(known), headers=headers(uuid.uuid4()))
        refused = client.post("/api/orders", json=one_item(unknown), headers=headers(uuid.uuid4()))

    assert placed.status_code == 201
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 1


def test_after_a_failed_lookup_unknown_products_are_refused_at_once_for_a_while(settings, headers):
    calls: list[float] = []
    failing = FastAPI()

    @failing.post("/internal/products/lookup")
    def fail() -> JSONResponse:
        calls.append(time.monotonic())
        return JSONResponse({"detail": "catalog is broken"}, status_code=500)

    brief = settings.model_copy(update={"order_catalog_retry_after": 1.0})
    with TestClient(create_app(brief, catalog_app=failing)) as client:
        first = client.post("/api/orders", json=one_item(uuid.uuid4()), headers=headers(uuid.uuid4()))
        second = client.post("/api/orders", json=one_item(uuid.uuid4()), headers=headers(uuid.uuid4()))
        assert (first.status_code, second.status_code, len(calls)) == (503, 503, 1)
        time.sleep(1.1)
        third = client.post("/api/orders", json=one_item(uuid.uuid4()), headers=headers(uuid.uuid4()))
    assert third.status_code == 503 and len(calls) == 2  # asked again once the pause was over


def test_the_lookup_carries_the_service_credential(settings, catalog, headers):
    catalog.token = "another-token"  # the catalog refuses orders' credential
    product = catalog.add("1.00")
    with TestClient(create_app(settings, catalog_app=catalog.app)) as client:
        response = client.post("/api/orders", json=one_item(product), headers=headers(uuid.uuid4()))
    assert response.status_code == 503
    assert catalog.calls == []


def test_product_changes_reach_the_view_through_the_broker(client, send, view, wait_for, headers, catalog):
    product = uuid.uuid4()
    send(env(change(product, 2, stock=3)), env(change(product, 1, stock=1)))
    wait_for(lambda: view().get(str(product)) == (2, "Product v2", 3))
    response = client.post("/api/orders", json=one_item(product, 3), headers=headers(uuid.uuid4()))
    assert response.status_code == 201 and catalog.calls == []
