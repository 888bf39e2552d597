"""Shipping addresses, shipping and delivery by an admin, partial and full refunds after confirmation:
through the routes and the kit's dispatcher, on real PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from contracts import PaymentRefunded, StockCommitted, new_envelope

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
ADDRESS = {
    "full_name": "Rahim Uddin",
    "line1": "House 12, Road 5",
    "city": "Dhaka",
    "postal_code": "1205",
    "country": "bd",
    "phone": "+880 1770-618575",
}


@pytest.fixture
def place(client, catalog, headers):
    def _place(address: dict | None = ADDRESS, user: uuid.UUID | None = None) -> dict:
        product = catalog.add("500.00", stock=10)
        body: dict = {"items": [{"product_id": str(product), "quantity": 2}]}
        if address is not None:
            body["shipping_address"] = address
        response = client.post("/api/orders", json=body, headers=headers(user or uuid.uuid4()))
        assert response.status_code == 201, response.text
        return response.json()

    return _place


@pytest.fixture
def confirm(client, payment_succeeded):
    """Pay for the order and commit its stock, as payments and the catalog would."""

    def _confirm(order: dict) -> uuid.UUID:
        payment = uuid.uuid4()
        paid = payment_succeeded(order, payment)
        for data in (paid, StockCommitted(order_id=order["id"], payment_id=payment, items=paid.items)):
            client.app.state.runtime.dispatcher.handle(new_envelope(data, producer="test", correlation_id=order["id"]))
        return payment

    return _confirm


def refund(client, order: dict, payment: uuid.UUID, amount: str, so_far: str, fully: bool) -> None:
    data = PaymentRefunded(
        payment_id=payment,
        order_id=order["id"],
        provider="stripe",
        amount=Decimal(amount),
        currency="BDT",
        reason="returned",
        refunded_amount=Decimal(so_far),
        fully_refunded=fully,
        restock=False,
    )
    client.app.state.runtime.dispatcher.handle(new_envelope(data, producer="payments", correlation_id=order["id"]))


def outbox(db_rows, order_id: str, event_type: str) -> list[dict]:
    return [
        r.envelope
        for r in db_rows(
            "SELECT envelope FROM orders.outbox WHERE event_type = :t AND envelope->>'correlation_id' = :id",
            t=event_type,
            id=order_id,
        )
    ]


def test_the_address_is_snapshotted_and_shown_back(client, place, headers):
    order = place()
    expected = {**ADDRESS, "country": "BD", "line2": None}
    assert order["shipping_address"] == expected
    assert (order["shipment"], order["refunded_amount"]) == (None, "0.00")
    seen = client.get(f"/api/orders/{order['id']}", headers=headers(uuid.UUID(order["user_id"]))).json()
    assert seen == order
    assert place(address=None)["shipping_address"] is None  # picked up


@pytest.mark.parametrize(
    "address",
    [
        {**ADDRESS, "country": "XX"},
        {**ADDRESS, "country": "UK"},  # the ISO code is GB
        {**ADDRESS, "country": "BGD"},
        {**ADDRESS, "full_name": "Rahim\x00Uddin"},
        {**ADDRESS, "line1": "Road 5\nDrop table"},
        {**ADDRESS, "city": "Dhaka\u202e"},
        {**ADDRESS, "line2": "x" * 201},
        {**ADDRESS, "full_name": "   "},
        {**ADDRESS, "phone": "call me"},
        {**ADDRESS, "postal_code": "1" * 21},
        {**ADDRESS, "floor": "3"},
        {k: v for k, v in ADDRESS.items() if k != "city"},
        "Dhaka",
        [],
    ],
)
def test_a_bad_address_is_422_and_writes_nothing(client, catalog, headers, db_rows, address):
    product = catalog.add("5.00")
    body = {"items": [{"product_id": str(product), "quantity": 1}], "shipping_address": address}
    response = client.post("/api/orders", json=body, headers=headers(uuid.uuid4()))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 0


def test_bengali_names_with_joiners_are_accepted(place):
    order = place({**ADDRESS, "full_name": "রহিম উদ্দিন", "line1": "ক্\u200dষ রোড"})
    assert order["shipping_address"]["full_name"] == "রহিম উদ্দিন"


def test_ship_then_deliver_walks_the_order_and_tells_the_customer(client, place, confirm, headers, db_rows):
    order = place()
    confirm(order)
    admin, owner = headers(uuid.uuid4(), "admin"), headers(uuid.UUID(order["user_id"]))

    shipped = client.post(
        f"/api/orders/{order['id']}/ship", json={"carrier": "Pathao", "tracking_number": "PX-1234"}, headers=admin
    )
    assert shipped.status_code == 200, shipped.text
    body = shipped.json()
    assert body["status"] == "shipped"
    assert (body["shipment"]["carrier"], body["shipment"]["tracking_number"]) == ("Pathao", "PX-1234")
    assert body["shipment"]["delivered_at"] is None

    delivered = client.post(f"/api/orders/{order['id']}/deliver", headers=admin)
    assert delivered.status_code == 200
    seen = client.get(f"/api/orders/{order['id']}", headers=owner).json()
    assert seen["status"] == "delivered"
    assert seen["shipment"]["shipped_at"] == body["shipment"]["shipped_at"]
    assert seen["shipment"]["delivered_at"] >= seen["shipment"]["shipped_at"]
    assert [e["status"] for e in seen["timeline"]] == ["pending_payment", "paid", "confirmed", "shipped", "delivered"]

    (shipped_event,) = outbox(db_rows, order["id"], "OrderShipped")
    assert shipped_event["data"]["tracking_number"] == "PX-1234"
    assert shipped_event["data"]["user_id"] == order["user_id"]
    assert len(outbox(db_rows, order["id"], "OrderDelivered")) == 1
    # Neither step can be repeated.
    assert client.post(f"/api/orders/{order['id']}/deliver", headers=admin).status_code == 409
    again = client.post(f"/api/orders/{order['id']}/ship", json={"carrier": "X", "tracking_number": "1"}, headers=admin)
    assert again.status_code == 409


def test_shipping_is_refused_before_confirmation_without_an_address_and_for_customers(
    client, place, confirm, headers, db_rows
):
    admin = headers(uuid.uuid4(), "admin")
    ship = {"carrier": "DHL", "tracking_number": "1Z999"}
    pending = place()
    pickup = place(address=None)
    confirm(pickup)
    owner = headers(uuid.UUID(pending["user_id"]))

    for order_id, who, status in (
        (pending["id"], admin, 409),
        (pickup["id"], admin, 409),
        (pending["id"], owner, 403),
        (str(uuid.uuid4()), admin, 404),
    ):
        response = client.post(f"/api/orders/{order_id}/ship", json=ship, headers=who)
        assert response.status_code == status, (order_id, response.text)
        assert response.headers["content-type"] == PROBLEM
    assert client.post(f"/api/orders/{pending['id']}/deliver", headers=owner).status_code == 403
    assert client.post(f"/api/orders/{pickup['id']}/deliver", headers=admin).status_code == 409
    assert "no shipping address" in client.post(f"/api/orders/{pickup['id']}/ship", json=ship, headers=admin).text
    assert db_rows("SELECT count(*) AS n FROM orders.outbox WHERE event_type = 'OrderShipped'")[0].n == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"carrier": "", "tracking_number": "1"}, {"carrier": "DHL", "tracking_number": "1\x07"}, {"carrier": "DHL"}],
)
def test_a_bad_shipment_is_422(client, place, confirm, headers, body):
    order = place()
    confirm(order)
    response = client.post(f"/api/orders/{order['id']}/ship", json=body, headers=headers(uuid.uuid4(), "admin"))
    assert response.status_code == 422
    assert client.get(f"/api/orders/{order['id']}", headers=headers(uuid.uuid4(), "admin")).json()["status"] == (
        "confirmed"
    )


def test_partial_refunds_add_up_and_the_last_one_refunds_a_delivered_order(client, place, confirm, headers):
    order = place()
    payment = confirm(order)
    admin = headers(uuid.uuid4(), "admin")
    client.post(f"/api/orders/{order['id']}/ship", json={"carrier": "DHL", "tracking_number": "T1"}, headers=admin)
    client.post(f"/api/orders/{order['id']}/deliver", headers=admin)

    refund(client, order, payment, "100.00", "100.00", fully=False)
    refund(client, order, payment, "100.00", "100.00", fully=False)  # the same refund, seen again
    partial = client.get(f"/api/orders/{order['id']}", headers=admin).json()
    assert (partial["status"], partial["refunded_amount"]) == ("delivered", "100.00")

    refund(client, order, payment, "900.00", "1000.00", fully=True)
    final = client.get(f"/api/orders/{order['id']}", headers=admin).json()
    assert (final["status"], final["refunded_amount"]) == ("refunded", "1000.00")
    assert [e["status"] for e in final["timeline"]][-3:] == ["delivered", "refund_pending", "refunded"]
    assert final["shipment"]["delivered_at"] is not None
