"""Placing orders against a fake catalog, on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

pytestmark = pytest.mark.integration


def test_place_order_snapshots_lines_and_emits_order_placed(client, catalog, headers, db_rows):
    user = uuid.uuid4()
    a = catalog.add("1250.00", stock=5)
    b = catalog.add("99.99", stock=3)

    response = client.post(
        "/api/orders",
        json={"items": [{"product_id": str(a), "quantity": 2}, {"product_id": str(b), "quantity": 3}]},
        headers=headers(user),
    )

    assert response.status_code == 201, response.text
    order = response.json()
    assert order["user_id"] == str(user)
    assert order["status"] == "pending_payment"
    assert order["currency"] == "BDT"
    assert order["total_amount"] == "2799.97"
    assert [(i["product_id"], i["sku"], i["unit_price"], i["quantity"], i["line_total"]) for i in order["items"]] == [
        (str(a), "SKU-1", "1250.00", 2, "2500.00"),
        (str(b), "SKU-2", "99.99", 3, "299.97"),
    ]
    assert [e["status"] for e in order["timeline"]] == ["pending_payment"]
    assert order["expires_at"] > order["created_at"]
    assert len(catalog.calls) == 1

    placed = db_rows("SELECT envelope FROM orders.outbox WHERE event_type = 'OrderPlaced'")
    assert len(placed) == 1
    data = placed[0].envelope["data"]
    assert data["order_id"] == order["id"]
    assert data["total_amount"] == "2799.97"
    assert [(line["sku"], line["quantity"]) for line in data["items"]] == [("SKU-1", 2), ("SKU-2", 3)]
    assert client.get(f"/api/orders/{order['id']}", headers=headers(user)).json() == order


def test_total_amount_equals_the_database_sum_of_lines(client, catalog, headers, db_rows):
    user = uuid.uuid4()
    prices = ["0.01", "19.99", "333.33", "1250.00", "7.10"]
    ids = [catalog.add(price, stock=1000) for price in prices]
    for quantities in ([1, 2, 3, 4, 5], [1000, 1, 999, 7, 13]):
        items = [{"product_id": str(p), "quantity": q} for p, q in zip(ids, quantities, strict=True)]
        assert client.post("/api/orders", json={"items": items}, headers=headers(user)).status_code == 201

    totals = db_rows(
        "SELECT o.id, o.total_amount, SUM(i.line_total) AS line_sum, SUM(i.unit_price * i.quantity) AS computed"
        " FROM orders.orders o JOIN orders.order_items i ON i.order_id = o.id GROUP BY o.id, o.total_amount"
    )
    assert len(totals) == 2
    for row in totals:
        assert row.total_amount == row.line_sum == row.computed
    assert {row.total_amount for row in totals} == {
        sum((Decimal(p) * q for p, q in zip(prices, qs, strict=True)), Decimal(0))
        for qs in ([1, 2, 3, 4, 5], [1000, 1, 999, 7, 13])
    }


def test_repeated_products_are_merged(client, catalog, headers):
    product = catalog.add("10.00", stock=10)
    items = [{"product_id": str(product), "quantity": 2}, {"product_id": str(product), "quantity": 3}]
    response = client.post("/api/orders", json={"items": items}, headers=headers(uuid.uuid4()))
    assert response.status_code == 201
    assert [(i["quantity"], i["line_total"]) for i in response.json()["items"]] == [(5, "50.00")]
    assert response.json()["total_amount"] == "50.00"
