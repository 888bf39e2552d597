"""Payment timeout and the stuck-saga sweeper."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from contracts import PaymentSucceeded, Shortage, StockRejected, new_envelope
from orders import service
from orders.app import create_app
from orders.settings import OrdersSettings
from shopkit.auth import load_keys
from shopkit.db import Database
from shopkit.uow import unit_of_work

pytestmark = pytest.mark.integration


@pytest.fixture
def place(client, catalog, headers):
    def _place() -> dict:
        product = catalog.add("10.00", stock=10)
        response = client.post(
            "/api/orders", json={"items": [{"product_id": str(product), "quantity": 1}]}, headers=headers(uuid.uuid4())
        )
        assert response.status_code == 201
        return response.json()

    return _place


def cancel_expired_orders(db: Database, **kwargs) -> int:
    """The job as the runtime runs it: in a fresh unit of work."""
    with unit_of_work(db) as uow:
        return service.cancel_expired_orders(uow, **kwargs)


def redrive_stuck_orders(db: Database, **kwargs) -> int:
    with unit_of_work(db) as uow:
        return service.redrive_stuck_orders(uow, **kwargs)


def outbox(db_rows, order_id: str, event_type: str) -> list[dict]:
    return [
        row.envelope
        for row in db_rows(
            "SELECT envelope FROM orders.outbox WHERE event_type = :t AND envelope->>'correlation_id' = :id"
            " ORDER BY created_at",
            t=event_type,
            id=order_id,
        )
    ]


def status(db_rows, order_id: str) -> str:
    return db_rows("SELECT status FROM orders.orders WHERE id = :id", id=order_id)[0].status


def test_expired_orders_are_cancelled_once(client, place, db_rows, settings):
    db = client.app.state.runtime.db
    expired, fresh = place(), place()
    after_expiry = datetime.fromisoformat(expired["expires_at"]) + timedelta(seconds=1)
    with db.engine.begin() as connection:  # the second order has time left
        connection.execute(
            text("UPDATE orders SET expires_at = :t WHERE id = :id"),
            {"t": after_expiry + timedelta(hours=1), "id": fresh["id"]},
        )

    assert cancel_expired_orders(db, now=after_expiry) == 1
    assert cancel_expired_orders(db, now=after_expiry) == 0

    assert (status(db_rows, expired["id"]), status(db_rows, fresh["id"])) == ("cancelled", "pending_payment")
    cancelled = outbox(db_rows, expired["id"], "OrderCancelled")
    assert [e["data"]["reason"] for e in cancelled] == ["payment timeout"]
    assert outbox(db_rows, fresh["id"], "OrderCancelled") == []


def test_default_payment_timeout_is_900_seconds(place):
    order = place()
    window = datetime.fromisoformat(order["expires_at"]) - datetime.fromisoformat(order["created_at"])
    assert window == timedelta(seconds=900)


def _pay(client, order: dict, payment: uuid.UUID) -> None:
    data = PaymentSucceeded(
        payment_id=payment,
        order_id=order["id"],
        provider="bkash",
        amount=Decimal(order["total_amount"]),
        currency="BDT",
        items=[
            {key: i[key] for key in ("product_id", "sku", "name", "unit_price", "quantity")} for i in order["items"]
        ],
    )
    client.app.state.runtime.dispatcher.handle(new_envelope(data, producer="payments", correlation_id=order["id"]))


def test_order_stuck_in_paid_asks_the_catalog_with_its_own_command(client, place, db_rows, settings):
    db = client.app.state.runtime.db
    order, payment = place(), uuid.uuid4()
    _pay(client, order, payment)
    now = datetime.now(UTC)

    assert redrive_stuck_orders(db, stuck_after=60, now=now) == 0  # not stuck yet
    later = now + timedelta(seconds=61)
    assert redrive_stuck_orders(db, stuck_after=60, now=later) == 1
    assert redrive_stuck_orders(db, stuck_after=60, now=later + timedelta(seconds=30)) == 0  # no spam
    assert redrive_stuck_orders(db, stuck_after=60, now=later + timedelta(seconds=61)) == 1

    # Orders' own command, never another service's PaymentSucceeded.
    assert outbox(db_rows, order["id"], "PaymentSucceeded") == []
    redriven = outbox(db_rows, order["id"], "StockCommitRequested")
    assert len(redriven) == 2
    assert redriven[0]["id"] != redriven[1]["id"]
    first = redriven[0]
    assert first["producer"] == "orders"
    assert first["correlation_id"] == order["id"]
    assert first["data"]["order_id"] == order["id"]
    assert first["data"]["payment_id"] == str(payment)
    assert [(i["sku"], i["quantity"], i["unit_price"]) for i in first["data"]["items"]] == [
        (order["items"][0]["sku"], 1, order["items"][0]["unit_price"])
    ]
    assert status(db_rows, order["id"]) == "paid"


def test_order_stuck_in_refund_pending_asks_again(client, place, db_rows):
    db = client.app.state.runtime.db
    order, payment = place(), uuid.uuid4()
    _pay(client, order, payment)
    shortage = Shortage(product_id=order["items"][0]["product_id"], requested=1, available=0)
    client.app.state.runtime.dispatcher.handle(
        new_envelope(StockRejected(order_id=order["id"], payment_id=payment, shortages=[shortage]), producer="catalog")
    )

    assert redrive_stuck_orders(db, stuck_after=60, now=datetime.now(UTC) + timedelta(seconds=61)) == 1
    requests = outbox(db_rows, order["id"], "RefundRequested")
    assert [r["data"]["payment_id"] for r in requests] == [str(payment), str(payment)]
    assert requests[0]["id"] != requests[1]["id"]


def test_jobs_run_periodically_in_the_app(pg_url, amqp_url, bus_namespace, tmp_path, catalog, db_rows, wait_for):
    settings = OrdersSettings(
        database_url=pg_url,
        amqp_url=amqp_url,
        bus_namespace=bus_namespace,
        var_dir=tmp_path,
        order_payment_timeout=0.2,
        order_sweep_interval=0.2,
    )
    product = catalog.add("5.00")
    with TestClient(create_app(settings, catalog_app=catalog.app)) as client:
        response = client.post(
            "/api/orders",
            json={"items": [{"product_id": str(product), "quantity": 1}]},
            headers={"Authorization": f"Bearer {_token(settings)}"},
        )
        assert response.status_code == 201
        order_id = response.json()["id"]
        wait_for(lambda: status(db_rows, order_id) == "cancelled", timeout=10)
    assert len(outbox(db_rows, order_id, "OrderCancelled")) == 1


def _token(settings: OrdersSettings) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "customer",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, load_keys(settings).private_pem, algorithm="EdDSA")
