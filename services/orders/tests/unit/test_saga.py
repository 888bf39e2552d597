"""The saga's process manager on its own: every (status, fact) pair, then the orderings events really
arrive in (duplicates, stock answers before the payment, refunds overtaking successes, second
payments, partial refunds). No database, no broker."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from contracts import (
    OrderLine,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    RefundRequested,
    Shortage,
    StockCommitRequested,
    StockCommitted,
    StockRejected,
)
from orders.domain import OrderStatus
from orders.saga import (
    CancelRequested,
    Decision,
    DeliverRequested,
    Fact,
    OrderState,
    PaymentTimedOut,
    Redrive,
    Refused,
    SeenRefund,
    Shipment,
    ShipRequested,
    decide,
)

pytestmark = pytest.mark.unit

S = OrderStatus
ORDER, USER = uuid.uuid4(), uuid.uuid4()
PAY, OTHER = uuid.uuid4(), uuid.uuid4()
TOTAL = Decimal("1000.00")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LINE = OrderLine(product_id=uuid.uuid4(), sku="SKU-1", name="Thing", unit_price=Decimal("500.00"), quantity=2)

# Abbreviations of the table below.
PP, PA, CO, SH, DE = S.PENDING_PAYMENT, S.PAID, S.CONFIRMED, S.SHIPPED, S.DELIVERED
CA, RP, RE = S.CANCELLED, S.REFUND_PENDING, S.REFUNDED
PAID_BY_PAY = (PA, CO, SH, DE, RP, RE)


def state(status: OrderStatus, **changes: object) -> OrderState:
    """An order as it would be in `status`: paid by PAY once past pending_payment (never when
    cancelled), fully refunded when refunded, with a shipping address, shipped when shipped."""
    base = OrderState(
        order_id=ORDER,
        user_id=USER,
        status=status,
        total_amount=TOTAL,
        currency="BDT",
        payment_id=PAY if status in PAID_BY_PAY else None,
        payment_provider="stripe" if status in PAID_BY_PAY else None,
        refunded_amount=TOTAL if status == RE else Decimal("0.00"),
        ships=True,
        shipment=Shipment("DHL", "TRK-1", T0) if status in (SH, DE) else None,
    )
    if status == DE:
        base = replace(base, shipment=Shipment("DHL", "TRK-1", T0, T0 + timedelta(days=1)))
    return replace(base, **changes)  # type: ignore[arg-type]


def succeeded(payment: uuid.UUID = PAY) -> PaymentSucceeded:
    return PaymentSucceeded(
        payment_id=payment, order_id=ORDER, provider="stripe", amount=TOTAL, currency="BDT", items=[LINE]
    )


def failed() -> PaymentFailed:
    return PaymentFailed(payment_id=OTHER, order_id=ORDER, provider="bkash", reason="2023 insufficient balance")


def committed(payment: uuid.UUID | None = PAY) -> StockCommitted:
    return StockCommitted(order_id=ORDER, payment_id=payment, items=[LINE])


def rejected(payment: uuid.UUID | None = PAY) -> StockRejected:
    return StockRejected(
        order_id=ORDER, payment_id=payment, shortages=[Shortage(product_id=LINE.product_id, requested=2, available=1)]
    )


def refunded(
    payment: uuid.UUID = PAY, amount: str = "1000.00", *, so_far: str | None = "1000.00", fully: bool = True
) -> PaymentRefunded:
    return PaymentRefunded(
        payment_id=payment,
        order_id=ORDER,
        provider="stripe",
        amount=Decimal(amount),
        currency="BDT",
        reason="refunded by an admin",
        refunded_amount=Decimal(so_far) if so_far is not None else None,
        fully_refunded=fully,
    )


def partly(payment: uuid.UUID = PAY, amount: str = "100.00", so_far: str = "100.00") -> PaymentRefunded:
    return refunded(payment, amount, so_far=so_far, fully=False)


FACTS: dict[str, Fact] = {
    "succeeded": succeeded(),
    "second-succeeded": succeeded(OTHER),
    "failed": failed(),
    "committed": committed(),
    "committed-other": committed(OTHER),
    "rejected": rejected(),
    "refunded": refunded(),
    "partly-refunded": partly(),
    "other-refunded": refunded(OTHER),
    "timed-out": PaymentTimedOut(),
    "cancel": CancelRequested(),
    "ship": ShipRequested("DHL", "TRK-9", T0),
    "deliver": DeliverRequested(T0 + timedelta(days=2)),
    "redrive": Redrive((LINE,)),
}

REFUSED = "refused"
RR, OC, OX = "RefundRequested", "OrderConfirmed", "OrderCancelled"


def same(*statuses: OrderStatus, messages: tuple[str, ...] = (), noted: bool = False) -> dict:
    """These statuses stay as they are, sending `messages`, with one timeline note or none."""
    return {s: (s, messages, (s,) if noted else ()) for s in statuses}


# fact -> status -> (status after, message types, statuses of the timeline entries written) | REFUSED
EXPECTED: dict[str, dict[OrderStatus, object]] = {
    "succeeded": {PP: (PA, (), (PA,)), **same(PA, CO, SH, DE, RP, RE), CA: (CA, (RR,), (CA,))},
    "second-succeeded": {PP: (PA, (), (PA,)), **same(PA, CO, SH, DE, RP, RE, CA, messages=(RR,), noted=True)},
    "failed": same(*S, noted=True),
    "committed": {
        PP: (CO, (OC,), (PA, CO)),
        PA: (CO, (OC,), (CO,)),
        **same(CO, SH, DE),
        **same(CA, RP, RE, noted=True),
    },
    "committed-other": {
        PP: (CO, (OC,), (PA, CO)),
        PA: (CO, (RR, OC), (PA, CO)),
        **same(CO, SH, DE),
        **same(CA, RP, RE, noted=True),
    },
    "rejected": {
        PP: (RP, (RR,), (PA, RP)),
        PA: (RP, (RR,), (RP,)),
        **same(CO, SH, DE, CA, noted=True),
        **same(RP, RE),
    },
    "refunded": {
        **same(PP, CA, noted=True),
        **{s: (RE, (), (RP, RE)) for s in (PA, CO, SH, DE)},
        RP: (RE, (), (RE,)),
        **same(RE),
    },
    "partly-refunded": {**same(PP, CA, PA, CO, SH, DE, RP, noted=True), **same(RE)},
    "other-refunded": same(*S, noted=True),
    "timed-out": {PP: (CA, (OX,), (CA,)), **same(PA, CO, SH, DE, CA, RP, RE)},
    "cancel": {PP: (CA, (OX,), (CA,)), **{s: REFUSED for s in S if s != PP}},
    "ship": {CO: (SH, ("OrderShipped",), (SH,)), **{s: REFUSED for s in S if s != CO}},
    "deliver": {SH: (DE, ("OrderDelivered",), (DE,)), **{s: REFUSED for s in S if s != SH}},
    "redrive": {PA: (PA, ("StockCommitRequested",), ()), RP: (RP, (RR,), ()), **same(PP, CO, SH, DE, CA, RE)},
}

PAIRS = [(fact, status) for fact in FACTS for status in S]


def test_the_table_covers_every_fact_and_every_status():
    assert set(EXPECTED) == set(FACTS)
    for fact, outcomes in EXPECTED.items():
        assert set(outcomes) == set(S), fact


@pytest.mark.parametrize(("fact", "status"), PAIRS, ids=[f"{f}-{s}" for f, s in PAIRS])
def test_every_fact_in_every_status(fact: str, status: OrderStatus):
    expected = EXPECTED[fact][status]
    if expected == REFUSED:
        with pytest.raises(Refused):
            decide(state(status), FACTS[fact])
        return
    decision = decide(state(status), FACTS[fact])
    assert (decision.state.status, types(decision), [n.status for n in decision.timeline]) == (
        expected[0],  # type: ignore[index]
        list(expected[1]),  # type: ignore[index]
        list(expected[2]),  # type: ignore[index]
    )
    for message in decision.messages:
        assert message.order_id == ORDER  # type: ignore[attr-defined]


def types(decision: Decision) -> list[str]:
    return [type(m).__name__ for m in decision.messages]


@pytest.mark.parametrize(
    "fact",
    ["succeeded", "second-succeeded", "committed", "committed-other", "rejected", "refunded", "partly-refunded"],
)
@pytest.mark.parametrize("status", list(S))
def test_an_event_seen_twice_changes_the_state_once(fact: str, status: OrderStatus):
    once = decide(state(status), FACTS[fact]).state
    assert decide(once, FACTS[fact]).state == once


def run(start: OrderState, *facts: Fact) -> tuple[OrderState, list[str], list[OrderStatus]]:
    current, sent, timeline = start, [], []
    for fact in facts:
        decision = decide(current, fact)
        current = decision.state
        sent += types(decision)
        timeline += [n.status for n in decision.timeline]
    return current, sent, timeline


# --- orderings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(["paid", "committed"])))
def test_confirm_path_in_any_order_with_duplicates_ends_like_in_order(order):
    events = {"paid": succeeded(), "committed": committed()}
    in_order = run(state(PP), succeeded(), committed())
    assert in_order == (state(CO), [OC], [PA, CO])
    facts = [events[name] for name in order for _ in range(2)]
    final, sent, timeline = run(state(PP), *facts, succeeded(), committed())
    assert (final, sent, timeline) == in_order


@pytest.mark.parametrize("order", list(itertools.permutations(["paid", "rejected"])))
def test_reject_path_in_any_order_ends_refunded_after_one_refund_request(order):
    events = {"paid": succeeded(), "rejected": rejected()}
    final, sent, timeline = run(state(PP), *(events[n] for n in order), rejected(), refunded(), refunded())
    assert final.status == RE and final.payment_id == PAY and final.refunded_amount == TOTAL
    assert sent == [RR]
    assert timeline == [PA, RP, RE]


@pytest.mark.parametrize("order", list(itertools.permutations(["paid", "committed", "refunded"])))
def test_an_admin_refund_racing_the_saga_always_ends_refunded_without_asking(order):
    events = {"paid": succeeded(), "committed": committed(), "refunded": refunded()}
    final, sent, _ = run(state(PP), *(events[n] for n in order))
    assert (final.status, final.payment_id, final.refunded_amount) == (RE, PAY, TOTAL)
    assert RR not in sent


def test_a_refund_that_overtook_its_success_is_applied_when_the_success_comes():
    remembered, _, _ = run(state(PP), refunded())
    assert remembered.status == PP and remembered.refunds_seen == (
        SeenRefund(PAY, TOTAL, True, "refunded by an admin"),
    )
    final, sent, timeline = run(remembered, succeeded())
    assert (final.status, final.refunds_seen, sent, timeline) == (RE, (), [], [PA, RP, RE])


def test_a_partial_refund_that_overtook_its_success_counts_once_paid():
    final, sent, timeline = run(state(PP), partly(), succeeded(), committed(), partly())
    assert (final.status, final.refunded_amount, final.refunds_seen) == (CO, Decimal("100.00"), ())
    assert sent == [OC] and timeline == [PP, PA, PA, CO]


def test_a_stock_answer_before_the_payment_finds_an_earlier_refund():
    final, sent, timeline = run(state(PP), refunded(), committed())
    assert (final.status, final.payment_id, final.refunded_amount) == (RE, PAY, TOTAL)
    assert sent == []  # never confirmed: the money was already back
    assert timeline == [PP, PA, RP, RE, RE]


def test_a_second_payment_is_refunded_and_its_refund_leaves_the_order_alone():
    final, sent, _ = run(state(PP), succeeded(), committed(), succeeded(OTHER), refunded(OTHER))
    assert (final.status, final.payment_id, final.refunded_amount) == (CO, PAY, Decimal("0.00"))
    assert sent == [OC, RR]
    request = decide(state(CO), succeeded(OTHER)).messages[0]
    assert isinstance(request, RefundRequested) and request.payment_id == OTHER


def test_a_success_after_cancellation_is_refunded_once_its_refund_is_known():
    cancelled, _, _ = run(state(PP), PaymentTimedOut())
    first = decide(cancelled, succeeded())
    assert types(first) == [RR] and first.state.status == CA
    after_refund = decide(first.state, refunded()).state
    assert types(decide(after_refund, succeeded())) == []  # already refunded: nothing more to ask
    assert after_refund.status == CA and after_refund.refunded_amount == Decimal("0.00")


def test_the_catalog_committing_for_another_payment_makes_that_one_pay():
    decision = decide(state(PA), committed(OTHER))
    assert (decision.state.status, decision.state.payment_id) == (CO, OTHER)
    refund = decision.messages[0]
    assert isinstance(refund, RefundRequested) and refund.payment_id == PAY


# --- refunds ------------------------------------------------------------------------------------------


def test_partial_refunds_add_up_and_the_last_one_refunds_the_order():
    final, sent, timeline = run(
        state(SH),
        partly(amount="100.00", so_far="100.00"),
        partly(amount="100.00", so_far="100.00"),  # the same refund again under a new event id
        partly(amount="250.00", so_far="350.00"),
        refunded(amount="650.00", so_far="1000.00"),
    )
    assert (final.status, final.refunded_amount, sent) == (RE, TOTAL, [])
    assert timeline == [SH, SH, RP, RE]


def test_partial_refunds_seen_out_of_order_keep_the_larger_total():
    final, _, timeline = run(state(CO), partly(amount="250.00", so_far="350.00"), partly())
    assert (final.status, final.refunded_amount, timeline) == (CO, Decimal("350.00"), [CO])


def test_a_v1_refund_is_a_full_refund_of_its_amount():
    final, _, _ = run(state(CO), refunded(so_far=None))
    assert (final.status, final.refunded_amount) == (RE, TOTAL)


@pytest.mark.parametrize("status", [CO, SH, DE])
def test_a_full_refund_after_confirmation_passes_through_refund_pending(status):
    decision = decide(state(status), refunded())
    assert [n.status for n in decision.timeline] == [RP, RE]
    assert decision.state.shipment == state(status).shipment


def test_refunds_of_other_payments_are_remembered_once_and_the_full_one_wins():
    final, _, _ = run(state(PP), partly(OTHER), refunded(OTHER), partly(OTHER, so_far="50.00"))
    assert final.refunds_seen == (SeenRefund(OTHER, TOTAL, True, "refunded by an admin"),)


# --- people and time ------------------------------------------------------------------------------------


def test_shipping_records_the_shipment_and_delivery_its_time():
    shipped = decide(state(CO), ShipRequested("Pathao", "PX-77", T0))
    assert shipped.state.shipment == Shipment("Pathao", "PX-77", T0)
    event = shipped.messages[0]
    assert (event.carrier, event.tracking_number, event.shipped_at, event.user_id) == (  # type: ignore[attr-defined]
        "Pathao",
        "PX-77",
        T0,
        USER,
    )
    delivered = decide(shipped.state, DeliverRequested(T0 + timedelta(hours=5)))
    assert delivered.state.shipment == Shipment("Pathao", "PX-77", T0, T0 + timedelta(hours=5))
    assert delivered.messages[0].delivered_at == T0 + timedelta(hours=5)  # type: ignore[attr-defined]


def test_an_order_without_an_address_is_not_shipped():
    with pytest.raises(Refused, match="no shipping address"):
        decide(state(CO, ships=False), ShipRequested("DHL", "T", T0))


def test_a_refusal_names_the_status_it_found():
    with pytest.raises(Refused, match="it is pending_payment"):
        decide(state(PP), ShipRequested("DHL", "T", T0))
    with pytest.raises(Refused, match="it is confirmed"):
        decide(state(CO), DeliverRequested(T0))


def test_a_stuck_paid_order_asks_the_catalog_with_its_own_command():
    decision = decide(state(PA), Redrive((LINE,)))
    (command,) = decision.messages
    assert isinstance(command, StockCommitRequested)
    assert (command.payment_id, command.items) == (PAY, [LINE])
    assert decision.state == state(PA) and decision.timeline == ()


def test_a_stuck_paid_order_without_a_known_payment_sends_nothing():
    assert decide(state(PA, payment_id=None), Redrive((LINE,))).messages == ()


def test_a_stuck_refund_asks_for_the_rest_of_the_payment():
    (request,) = decide(state(RP), Redrive()).messages
    assert isinstance(request, RefundRequested)
    assert (request.payment_id, request.amount, request.restock) == (PAY, None, True)


def test_the_timeout_and_the_customer_cancel_with_their_reasons():
    timed_out = decide(state(PP), PaymentTimedOut())
    by_customer = decide(state(PP), CancelRequested())
    assert [m.reason for m in timed_out.messages] == ["payment timeout"]  # type: ignore[attr-defined]
    assert [m.reason for m in by_customer.messages] == ["cancelled by the customer"]  # type: ignore[attr-defined]
    assert [n.reason for n in by_customer.timeline] == ["cancelled by the customer"]
