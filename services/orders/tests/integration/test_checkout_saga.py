"""The checkout saga as orders sees it: events through RabbitMQ, duplicates and every delivery order."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import event

from contracts import (
    OrderLine,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    Shortage,
    StockCommitted,
    StockRejected,
    new_envelope,
)
from orders import repository

pytestmark = pytest.mark.integration


@pytest.fixture
def place(client, catalog, headers):
    def _place(user: uuid.UUID | None = None) -> dict:
        product = catalog.add("500.00", stock=10)
        response = client.post(
            "/api/orders",
            json={"items": [{"product_id": str(product), "quantity": 2}]},
            headers=headers(user or uuid.uuid4()),
        )
        assert response.status_code == 201, response.text
        return response.json()

    return _place


@pytest.fixture
def deliver(client):
    """Hand an envelope straight to the service's dispatcher (inbox + handler in one transaction), as
    the consumer does, so a test controls the exact delivery order."""
    return client.app.state.runtime.dispatcher.handle


@pytest.fixture
def state(db_rows):
    def _state(order_id: str) -> dict:
        order = db_rows("SELECT status, payment_id FROM orders.orders WHERE id = :id", id=order_id)[0]
        emitted = db_rows(
            "SELECT event_type, envelope FROM orders.outbox WHERE envelope->>'correlation_id' = :id"
            " AND event_type <> 'OrderPlaced' ORDER BY created_at",
            id=order_id,
        )
        timeline = db_rows("SELECT status FROM orders.order_events WHERE order_id = :id ORDER BY id", id=order_id)
        return {
            "status": order.status,
            "payment_id": str(order.payment_id) if order.payment_id else None,
            "emitted": sorted(row.event_type for row in emitted),
            "envelopes": [row.envelope for row in emitted],
            "statuses": [row.status for row in timeline],
        }

    return _state


def lines(order: dict) -> list[OrderLine]:
    return [
        OrderLine(
            product_id=i["product_id"],
            sku=i["sku"],
            name=i["name"],
            unit_price=Decimal(i["unit_price"]),
            quantity=i["quantity"],
        )
        for i in order["items"]
    ]


def paid(order: dict, payment_id: uuid.UUID) -> PaymentSucceeded:
    return PaymentSucceeded(
        payment_id=payment_id,
        order_id=order["id"],
        provider="stripe",
        amount=Decimal(order["total_amount"]),
        currency=order["currency"],
        items=lines(order),
    )


def committed(order: dict, payment_id: uuid.UUID) -> StockCommitted:
    return StockCommitted(order_id=order["id"], payment_id=payment_id, items=lines(order))


def rejected(order: dict, payment_id: uuid.UUID) -> StockRejected:
    shortage = Shortage(product_id=order["items"][0]["product_id"], requested=2, available=1)
    return StockRejected(order_id=order["id"], payment_id=payment_id, shortages=[shortage])


def refunded(order: dict, payment_id: uuid.UUID, reason: str = "stock unavailable") -> PaymentRefunded:
    return PaymentRefunded(
        payment_id=payment_id,
        order_id=order["id"],
        provider="stripe",
        amount=Decimal(order["total_amount"]),
        currency=order["currency"],
        reason=reason,
    )


def env(data):
    return new_envelope(data, producer="test", correlation_id=data.order_id)


# --- through RabbitMQ -------------------------------------------------------------------------------


def test_happy_path_through_the_bus_reaches_confirmed(client, place, send, state, wait_for, headers):
    order = place()
    payment = uuid.uuid4()

    send(paid(order, payment))
    wait_for(lambda: state(order["id"])["status"] == "paid")
    send(committed(order, payment))
    final = wait_for(lambda: (s := state(order["id"]))["status"] == "confirmed" and s)

    assert final["payment_id"] == str(payment)
    assert final["emitted"] == ["OrderConfirmed"]
    confirmed = final["envelopes"][0]
    assert confirmed["data"]["total_amount"] == order["total_amount"]
    assert confirmed["producer"] == "orders"
    seen = client.get(f"/api/orders/{order['id']}", headers=headers(uuid.UUID(order["user_id"]))).json()
    assert [e["status"] for e in seen["timeline"]] == ["pending_payment", "paid", "confirmed"]


def test_stock_rejected_through_the_bus_asks_for_a_refund(place, send, state, wait_for):
    order = place()
    payment = uuid.uuid4()

    send(paid(order, payment), rejected(order, payment))
    final = wait_for(lambda: (s := state(order["id"]))["status"] == "refund_pending" and s)
    assert final["emitted"] == ["RefundRequested"]
    assert final["envelopes"][0]["data"]["payment_id"] == str(payment)

    send(refunded(order, payment))
    final = wait_for(lambda: (s := state(order["id"]))["status"] == "refunded" and s)
    assert final["statuses"] == ["pending_payment", "paid", "refund_pending", "refunded"]


def test_duplicated_and_reordered_events_through_the_bus(place, send, state, wait_for):
    order = place()
    payment = uuid.uuid4()
    stock, payment_event = env(committed(order, payment)), env(paid(order, payment))

    # The catalog's answer overtakes the payment; both arrive twice, and the payment once more re-emitted.
    send(stock, stock, payment_event, payment_event, paid(order, payment))
    final = wait_for(lambda: (s := state(order["id"]))["status"] == "confirmed" and s)
    send(committed(order, payment))  # a late duplicate under a new event id

    wait_for(lambda: len(state(order["id"])["statuses"]) >= 3)
    final = state(order["id"])
    assert final["status"] == "confirmed"
    assert final["emitted"] == ["OrderConfirmed"]
    assert final["statuses"] == ["pending_payment", "paid", "confirmed"]


# --- every delivery order, straight into the dispatcher ---------------------------------------------


def _outcome(s: dict) -> tuple:
    return s["status"], s["payment_id"], s["emitted"], s["statuses"]


def test_confirm_path_any_order_with_duplicates_ends_like_in_order(place, deliver, state):
    payment = uuid.uuid4()
    reference = place()
    for data in (paid(reference, payment), committed(reference, payment)):
        deliver(env(data))
    expected = _outcome(state(reference["id"]))
    assert expected[0] == "confirmed" and expected[2] == ["OrderConfirmed"]

    for permutation in itertools.permutations(["paid", "committed"]):
        order = place()
        events = {"paid": env(paid(order, payment)), "committed": env(committed(order, payment))}
        for name in permutation:
            deliver(events[name])
            deliver(events[name])  # redelivery of the same message
        deliver(env(paid(order, payment)))  # the same fact under a new event id
        deliver(env(committed(order, payment)))
        assert _outcome(state(order["id"])) == expected, permutation


def test_reject_path_any_order_with_duplicates_ends_like_in_order(place, deliver, state):
    payment = uuid.uuid4()
    reference = place()
    for data in (paid(reference, payment), rejected(reference, payment), refunded(reference, payment)):
        deliver(env(data))
    expected = _outcome(state(reference["id"]))
    assert expected[:3] == ("refunded", str(payment), ["RefundRequested"])

    for permutation in itertools.permutations(["paid", "rejected"]):
        order = place()
        events = {"paid": env(paid(order, payment)), "rejected": env(rejected(order, payment))}
        for name in permutation:
            deliver(events[name])
            deliver(events[name])
        deliver(env(rejected(order, payment)))
        # payments refunds only after RefundRequested, so the refund always comes after it
        deliver(env(refunded(order, payment)))
        deliver(env(refunded(order, payment)))
        assert _outcome(state(order["id"])) == expected, permutation


@pytest.mark.parametrize("permutation", list(itertools.permutations(["paid", "committed", "refunded"])))
def test_admin_refund_racing_the_saga_always_ends_refunded(place, deliver, state, permutation):
    order = place()
    payment = uuid.uuid4()
    events = {
        "paid": env(paid(order, payment)),
        "committed": env(committed(order, payment)),
        "refunded": env(refunded(order, payment, "refunded by an admin")),
    }
    for name in permutation:
        deliver(events[name])
    final = state(order["id"])
    assert final["status"] == "refunded"
    assert final["payment_id"] == str(payment)
    assert "RefundRequested" not in final["emitted"]  # the money is already back


# --- the shared decisions, one by one ---------------------------------------------------------------


def test_payment_for_a_cancelled_order_is_refunded_and_order_stays_cancelled(place, deliver, state, client, headers):
    order = place()
    owner = headers(uuid.UUID(order["user_id"]))
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=owner).status_code == 200
    payment = uuid.uuid4()

    deliver(env(paid(order, payment)))

    final = state(order["id"])
    assert final["status"] == "cancelled"
    assert final["emitted"] == ["OrderCancelled", "RefundRequested"]
    refund = next(e for e in final["envelopes"] if e["type"] == "RefundRequested")
    assert refund["data"]["payment_id"] == str(payment)


def test_second_payment_is_refunded_first_stays(place, deliver, state):
    order = place()
    first, second = uuid.uuid4(), uuid.uuid4()
    deliver(env(paid(order, first)))
    deliver(env(committed(order, first)))
    deliver(env(paid(order, second)))

    final = state(order["id"])
    assert (final["status"], final["payment_id"]) == ("confirmed", str(first))
    refund = [e for e in final["envelopes"] if e["type"] == "RefundRequested"]
    assert [r["data"]["payment_id"] for r in refund] == [str(second)]

    # Its refund does not touch the order's own payment.
    deliver(env(refunded(order, second, "duplicate payment")))
    assert state(order["id"])["status"] == "confirmed"


def test_failed_payment_leaves_the_order_payable(place, deliver, state):
    order = place()
    deliver(env(PaymentFailed(payment_id=uuid.uuid4(), order_id=order["id"], provider="bkash", reason="2023")))
    final = state(order["id"])
    assert final["status"] == "pending_payment"
    assert final["statuses"] == ["pending_payment", "pending_payment"]  # a note on the timeline
    assert final["emitted"] == []


def test_event_for_an_unknown_order_is_ignored(deliver, db_rows, place):
    place()
    ghost = {"id": str(uuid.uuid4()), "total_amount": "1.00", "currency": "BDT", "items": []}
    deliver(env(paid(ghost, uuid.uuid4())))
    assert db_rows("SELECT count(*) AS n FROM orders.orders")[0].n == 1


def test_a_saga_event_moves_the_order_and_adds_its_timeline_entry_in_one_statement(client, place, deliver, state):
    order = place()
    payment_id = uuid.uuid4()
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    engine = client.app.state.runtime.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        deliver(env(paid(order, payment_id)))
        deliver(env(committed(order, payment_id)))
    finally:
        event.remove(engine, "before_cursor_execute", record)

    writes = [s for s in statements if "order_events" in s or s.startswith("UPDATE orders")]
    assert len(writes) == 2, writes  # one per event: an UPDATE carrying its timeline INSERT (two before)
    assert all(s.startswith("WITH timeline AS (INSERT INTO order_events") for s in writes)
    assert state(order["id"])["statuses"] == ["pending_payment", "paid", "confirmed"]
    assert state(order["id"])["status"] == "confirmed"
    # Cacheable, so compiled once: a statement without a cache key is compiled again for every event
    # (a multi-row VALUES has none), which cost more than the round trip saved.
    assert repository._update_with_timeline(("status", "updated_at"))._generate_cache_key() is not None
