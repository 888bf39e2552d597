"""Every event survives its envelope on the wire; money is a two-place decimal string; consumers
ignore fields they do not know; the schema export writes one document per event."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts import (
    EVENT_TYPES,
    Envelope,
    EventData,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    ProductChanged,
    RefundRequested,
    Shortage,
    StockCommitRequested,
    StockCommitted,
    StockRejected,
    new_envelope,
    parse_data,
)

pytestmark = pytest.mark.unit

ORDER, USER, PAYMENT, PRODUCT = (uuid.uuid4() for _ in range(4))
LINE = OrderLine(product_id=PRODUCT, sku="PEN-1", name="Pen", unit_price=Decimal("12.5"), quantity=2)

SAMPLES: list[EventData] = [
    OrderPlaced(
        order_id=ORDER,
        user_id=USER,
        currency="BDT",
        total_amount=Decimal("25"),
        items=[LINE],
        expires_at="2030-01-01T00:00:00+00:00",
    ),
    OrderCancelled(order_id=ORDER, user_id=USER, reason="payment timeout"),
    OrderConfirmed(order_id=ORDER, user_id=USER, total_amount=Decimal("25.00"), currency="BDT"),
    PaymentSucceeded(
        payment_id=PAYMENT, order_id=ORDER, provider="stripe", amount=Decimal("25.00"), currency="BDT", items=[LINE]
    ),
    PaymentFailed(payment_id=PAYMENT, order_id=ORDER, provider="bkash", reason="insufficient balance"),
    StockCommitted(order_id=ORDER, payment_id=PAYMENT, items=[LINE]),
    StockRejected(
        order_id=ORDER, payment_id=PAYMENT, shortages=[Shortage(product_id=PRODUCT, requested=2, available=1)]
    ),
    RefundRequested(order_id=ORDER, payment_id=PAYMENT, reason="stock rejected"),
    PaymentRefunded(
        payment_id=PAYMENT,
        order_id=ORDER,
        provider="bkash",
        amount=Decimal("25.00"),
        currency="BDT",
        reason="stock rejected",
        refunded_amount=Decimal("25.00"),
        fully_refunded=True,
        restock=False,
    ),
    StockCommitRequested(order_id=ORDER, payment_id=PAYMENT, items=[LINE]),
    OrderShipped(
        order_id=ORDER,
        user_id=USER,
        carrier="Pathao",
        tracking_number="PX-1",
        shipped_at=datetime(2030, 1, 1, tzinfo=UTC),
    ),
    OrderDelivered(order_id=ORDER, user_id=USER, delivered_at=datetime(2030, 1, 2, tzinfo=UTC)),
    ProductChanged(
        product_id=PRODUCT,
        sku="PEN-1",
        name="Pen",
        price=Decimal("12.50"),
        currency="BDT",
        is_active=True,
        stock=7,
        version=3,
        category="stationery",
        images=["https://img.example.com/pen.png"],
    ),
]


def test_samples_cover_every_event_type() -> None:
    assert {type(sample).TYPE for sample in SAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).TYPE)
def test_every_event_round_trips_through_its_envelope_as_json(event: EventData) -> None:
    envelope = new_envelope(event, producer="orders", correlation_id=ORDER, causation_id=uuid.uuid4())
    wire = envelope.model_dump_json()
    received = Envelope.model_validate_json(wire)
    assert received == envelope
    assert received.type == type(event).TYPE and received.version == type(event).VERSION
    assert received.correlation_id == str(ORDER)
    assert parse_data(received, type(event)) == event
    assert EVENT_TYPES[received.type].model_validate(received.data) == event


def test_money_travels_as_a_two_place_decimal_string() -> None:
    placed = SAMPLES[0]
    data = json.loads(new_envelope(placed, producer="orders").model_dump_json())["data"]
    assert data["total_amount"] == "25.00"
    assert data["items"][0]["unit_price"] == "12.50"
    assert OrderPlaced.model_validate(data).total_amount == Decimal("25.00")
    assert isinstance(OrderPlaced.model_validate(data).items[0].unit_price, Decimal)


def test_unknown_fields_are_ignored_so_producers_can_add_fields() -> None:
    data = {"order_id": str(ORDER), "user_id": str(USER), "reason": "x", "added_in_v2": {"anything": 1}}
    assert OrderCancelled.model_validate(data) == OrderCancelled(order_id=ORDER, user_id=USER, reason="x")
    envelope = Envelope.model_validate(
        {"type": "OrderCancelled", "producer": "orders", "data": data, "future_header": "ok"}
    )
    assert parse_data(envelope, OrderCancelled).reason == "x"


def test_invalid_payloads_and_mismatched_types_are_refused() -> None:
    with pytest.raises(ValidationError):
        OrderConfirmed(order_id=ORDER, user_id=USER, total_amount=Decimal("1"), currency="bdt")
    with pytest.raises(ValidationError):
        OrderLine(product_id=PRODUCT, sku="s", name="n", unit_price=Decimal("1"), quantity=0)
    with pytest.raises(ValueError, match="is not a"):
        parse_data(new_envelope(SAMPLES[1], producer="orders"), OrderPlaced)


def test_export_schemas_writes_one_schema_per_event(tmp_path: Path) -> None:
    target = tmp_path / "events"
    subprocess.run([sys.executable, "-m", "contracts.export_schemas", str(target)], check=True, capture_output=True)
    files = sorted(path.name for path in target.glob("*.json"))
    assert files == sorted(["Envelope.json", *(f"{name}.v{m.VERSION}.json" for name, m in EVENT_TYPES.items())])
    placed = json.loads((target / "OrderPlaced.v1.json").read_text())
    assert placed["x-event-type"] == "OrderPlaced"
    assert {"order_id", "user_id", "currency", "total_amount", "items"} <= set(placed["required"])
    assert placed["properties"]["total_amount"]["type"] == "string"


def test_a_version_1_refund_reads_as_a_full_refund_that_restocks() -> None:
    v1 = {
        "payment_id": str(PAYMENT),
        "order_id": str(ORDER),
        "provider": "stripe",
        "amount": "25.00",
        "currency": "BDT",
        "reason": "stock rejected",
    }
    refunded = PaymentRefunded.model_validate(v1)
    assert refunded.fully_refunded and refunded.restock and refunded.refunded_amount is None
    requested = RefundRequested.model_validate({"order_id": str(ORDER), "reason": "x"})
    assert requested.amount is None and requested.restock


def test_the_envelope_carries_the_trace_context_of_its_producer() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    envelope = new_envelope(SAMPLES[1], producer="orders", traceparent=parent)
    assert Envelope.model_validate_json(envelope.model_dump_json()).traceparent == parent
