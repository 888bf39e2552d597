"""Refunds on fakes: partial and full, the rest, restock defaults, limits, retries, exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import update

from contracts import OrderDelivered, RefundRequested
from payments.domain import PaymentStatus
from payments.flows import refunds, starting
from payments.flows.outcomes import apply_verdict
from payments.models import Payment, Refund
from payments.providers.base import Outcome, ProviderRefused, ProviderUnavailable, ProviderVerdict
from shopkit.problems import Conflict, Unprocessable

from .conftest import Payments, customer

pytestmark = pytest.mark.unit


def _paid_payment(svc: Payments, provider: str = "stripe", total: str = "1250.00") -> Payment:
    user = uuid.uuid4()
    order_id = svc.place_order(user, total)
    payment = starting.start_payment(svc.context, customer(user), order_id, provider, None).payment
    verdict = ProviderVerdict(
        provider, Outcome.PAID, payment.provider_reference, "pi_or_trx", Decimal(total), "BDT", detail="paid"
    )
    with svc.context.uow() as uow:
        assert apply_verdict(uow, verdict) == "payment succeeded"
        uow.commit()
    return svc.payment(payment.id)


def _admin_refund(
    svc: Payments, payment: Payment, amount: str | None = None, restock: bool | None = None, key: str | None = None
) -> Payment:
    with svc.context.uow() as uow:
        return refunds.refund_payment(
            uow,
            payment.id,
            amount=Decimal(amount) if amount else None,
            reason="goodwill",
            restock=restock,
            key=f"admin-{key or uuid.uuid4()}",
            providers=svc.context.providers,
        )


def _refunded_events(svc: Payments) -> list[dict[str, object]]:
    return [e["data"] for e in svc.events("PaymentRefunded")]


def test_a_partial_refund_then_the_rest(svc: Payments) -> None:
    payment = _paid_payment(svc)

    _admin_refund(svc, payment, "400.00")
    assert svc.stripe.calls.named("refund") == []  # asked of the provider after the commit
    svc.drain()

    partly = svc.payment(payment.id)
    assert (partly.status, partly.refunded_amount) == (PaymentStatus.PARTIALLY_REFUNDED, Decimal("400.00"))
    _admin_refund(svc, payment)  # no amount: the rest
    svc.drain()

    done = svc.payment(payment.id)
    assert (done.status, done.refunded_amount) == (PaymentStatus.REFUNDED, Decimal("1250.00"))
    assert [c.amount for c in svc.stripe.calls.named("refund")] == [Decimal("400.00"), Decimal("850.00")]
    first, rest = _refunded_events(svc)
    assert (first["amount"], first["refunded_amount"], first["fully_refunded"]) == ("400.00", "400.00", False)
    assert (rest["amount"], rest["refunded_amount"], rest["fully_refunded"]) == ("850.00", "1250.00", True)
    # A partial refund restocks only when asked; the rest of a confirmed (not shipped) order restocks.
    assert (first["restock"], rest["restock"]) == (False, True)


def test_more_than_is_left_is_422_and_nothing_left_is_a_no_op(svc: Payments) -> None:
    payment = _paid_payment(svc)
    _admin_refund(svc, payment, "1000.00")

    with pytest.raises(Unprocessable, match=r"250\.00"):
        _admin_refund(svc, payment, "250.01")
    _admin_refund(svc, payment, "250.00")
    assert svc.payment(payment.id).status == PaymentStatus.REFUND_PENDING  # all of it asked for
    _admin_refund(svc, payment)  # the rest, when nothing is left: changes nothing

    svc.drain()
    assert len(svc.stripe.calls.named("refund")) == 2
    assert svc.payment(payment.id).status == PaymentStatus.REFUNDED


def test_only_a_paid_payment_is_refunded(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    payment = starting.start_payment(svc.context, customer(user), order_id, "stripe", None).payment

    with pytest.raises(Conflict, match="initiated"):
        _admin_refund(svc, payment)


def test_bkash_takes_at_most_ten_refunds_of_one_payment(svc: Payments) -> None:
    payment = _paid_payment(svc, "bkash")
    for _ in range(10):
        _admin_refund(svc, payment, "1.00")

    with pytest.raises(Conflict, match="at most 10"):
        _admin_refund(svc, payment, "1.00")
    svc.drain()
    assert len(svc.bkash.calls.named("refund")) == 10
    assert svc.payment(payment.id).refunded_amount == Decimal("10.00")


def test_the_same_request_twice_refunds_once(svc: Payments) -> None:
    payment = _paid_payment(svc)
    _admin_refund(svc, payment, "100.00", key="k-1")
    _admin_refund(svc, payment, "100.00", key="k-1")
    with pytest.raises(Conflict, match="Idempotency-Key"):
        _admin_refund(svc, payment, "200.00", key="k-1")
    request = RefundRequested(order_id=payment.order_id, payment_id=payment.id, reason="stock", amount=None)
    event_id = svc.deliver(request)
    svc.deliver(request, event_id=event_id)  # redelivered: the inbox skips it
    svc.deliver(RefundRequested(order_id=payment.order_id, payment_id=payment.id, reason="again"))

    svc.drain()
    svc.drain()

    # Due refunds are run side by side (run_due_refunds), so the provider sees them in either order.
    assert sorted(c.amount for c in svc.stripe.calls.named("refund")) == [Decimal("100.00"), Decimal("1150.00")]
    assert len(svc.events("PaymentRefunded")) == 2
    assert svc.payment(payment.id).status == PaymentStatus.REFUNDED


def test_refund_requested_without_a_payment_id_refunds_the_orders_paying_payment(svc: Payments) -> None:
    payment = _paid_payment(svc)

    svc.deliver(RefundRequested(order_id=payment.order_id, reason="stock rejected", restock=True))
    svc.drain()

    [data] = _refunded_events(svc)
    assert (data["payment_id"], data["amount"], data["restock"]) == (str(payment.id), "1250.00", True)


def test_after_delivery_the_rest_does_not_restock_unless_asked(svc: Payments) -> None:
    first, second = _paid_payment(svc), _paid_payment(svc)
    for payment in (first, second):
        delivered_at = datetime(2026, 1, 1, tzinfo=UTC)
        svc.deliver(OrderDelivered(order_id=payment.order_id, user_id=payment.user_id, delivered_at=delivered_at))

    _admin_refund(svc, first)
    _admin_refund(svc, second, restock=True)  # a return: the goods came back
    svc.drain()

    restock = {e["payment_id"]: e["restock"] for e in _refunded_events(svc)}
    assert restock == {str(first.id): False, str(second.id): True}


def test_a_provider_that_is_down_is_asked_again_later_and_the_refund_is_recorded_once(svc: Payments) -> None:
    payment = _paid_payment(svc)
    svc.stripe.calls.fail_next.append(ProviderUnavailable("Stripe: 503"))
    _admin_refund(svc, payment, "50.00")

    svc.drain()
    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    assert svc.drain() == 0  # backed off: not due yet
    with svc.context.uow() as uow:
        uow.session.execute(update(Refund).values(claimed_until=None))  # ... until the back-off is over
        uow.commit()
    svc.drain()

    calls = svc.stripe.calls.named("refund")
    assert len(calls) == 2 and calls[0].refund_id == calls[1].refund_id  # one idempotency key
    assert not calls[0].retry and calls[1].retry
    assert [e["amount"] for e in _refunded_events(svc)] == ["50.00"]


def test_a_refused_refund_is_failed_and_the_payment_keeps_its_money(svc: Payments) -> None:
    payment = _paid_payment(svc)
    svc.stripe.calls.fail_next.append(ProviderRefused("charge disputed"))
    _admin_refund(svc, payment)
    assert svc.payment(payment.id).status == PaymentStatus.REFUND_PENDING

    svc.drain()

    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    [row] = svc.rows("SELECT status, last_error FROM refunds")
    assert row.status == "failed" and "disputed" in row.last_error
    assert svc.events("PaymentRefunded") == []


def test_a_refund_made_in_the_providers_dashboard_is_recorded_once(svc: Payments) -> None:
    payment = _paid_payment(svc)
    _admin_refund(svc, payment, "100.00")
    svc.drain()
    total = ProviderVerdict("stripe", Outcome.REFUNDED, transaction_id="pi_or_trx", refunded_total=Decimal("300.00"))

    for _ in range(2):  # the webhook of the dashboard refund, delivered twice
        with svc.context.uow() as uow:
            apply_verdict(uow, total)
            uow.commit()

    refunded = svc.payment(payment.id)
    assert (refunded.status, refunded.refunded_amount) == (PaymentStatus.PARTIALLY_REFUNDED, Decimal("300.00"))
    assert [e["amount"] for e in _refunded_events(svc)] == ["100.00", "200.00"]
    assert len(svc.stripe.calls.named("refund")) == 1
