"""Reconciliation on fakes: a lost webhook found by lookup, a paid session found before its expiry, a
refund made in the dashboard read from the event list; each repair applied, logged and counted once,
even when a pass dies between the lookup and its effect or reads an event twice."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from contracts import OrderCancelled
from payments.domain import PaymentStatus
from payments.flows import reconcile, repairs, starting, stripe_webhooks
from payments.flows.outcomes import apply_verdict
from payments.flows.repairs import PaymentState, repair_kind
from payments.flows.stripe_webhooks import store_event
from payments.models import Payment
from payments.providers.base import Outcome, ProviderVerdict

from .conftest import Payments, customer

pytestmark = pytest.mark.unit


class Crash(BaseException):
    """The process dying: nothing catches it."""


@pytest.fixture(autouse=True)
def _no_grace(svc: Payments) -> None:
    svc.context.settings.reconcile_grace = 0.0
    svc.context.settings.reconcile_interval = 0.01


def _started(svc: Payments, total: str = "1250.00") -> tuple[uuid.UUID, Payment]:
    user = uuid.uuid4()
    order_id = svc.place_order(user, total)
    return user, starting.start_payment(svc.context, customer(user), order_id, "stripe", None).payment


def _paid_at_stripe(svc: Payments, payment: Payment, total: str = "1250.00", refunded: str | None = None) -> None:
    assert payment.provider_reference
    svc.stripe.sessions[payment.provider_reference] = ProviderVerdict(
        "stripe",
        Outcome.PAID,
        payment.provider_reference,
        f"pi_{payment.id.hex[:8]}",
        Decimal(total),
        "BDT",
        refunded_total=Decimal(refunded) if refunded else None,
        detail="looked up: paid",
    )


def _reconciled(provider: str, kind: str) -> float:
    return REGISTRY.get_sample_value("shop_reconciled_total", {"provider": provider, "kind": kind}) or 0.0


def _repairs_logged(svc: Payments, payment_id: uuid.UUID) -> list[str]:
    rows = svc.rows(
        "SELECT operation FROM provider_log WHERE direction = 'repair' AND payment_id = :p ORDER BY created_at",
        p=str(payment_id),
    )
    return [row.operation for row in rows]


def _charge_refunded(event_id: str, intent: str, refunded_minor: int, *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": "charge.refunded",
        "created": created or int(time.time()),
        "data": {
            "object": {
                "object": "charge",
                "payment_intent": intent,
                "currency": "bdt",
                "amount_refunded": refunded_minor,
            }
        },
    }


def test_a_payment_whose_webhook_was_lost_is_confirmed_once(svc: Payments) -> None:
    _, payment = _started(svc)
    _paid_at_stripe(svc, payment)
    before = _reconciled("stripe", "paid")

    assert reconcile.run_pass(svc.context) == 1
    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    assert svc.payment(payment.id).provider_transaction_id == f"pi_{payment.id.hex[:8]}"
    assert len(svc.events("PaymentSucceeded")) == 1
    assert _repairs_logged(svc, payment.id) == ["reconcile paid"]
    assert _reconciled("stripe", "paid") == before + 1

    # Nothing left to repair: the next pass does not even look it up.
    lookups = len(svc.stripe.calls.named("lookup"))
    assert reconcile.run_pass(svc.context) == 0
    assert len(svc.stripe.calls.named("lookup")) == lookups
    assert len(svc.events("PaymentSucceeded")) == 1


def test_a_payment_within_the_grace_or_still_unpaid_is_left_alone(svc: Payments) -> None:
    svc.context.settings.reconcile_grace = 3600.0
    _, young = _started(svc)
    _paid_at_stripe(svc, young)
    assert reconcile.run_pass(svc.context) == 0
    assert svc.stripe.calls.named("lookup") == []

    svc.context.settings.reconcile_grace = 0.0
    _, unpaid = _started(svc)
    assert reconcile.run_pass(svc.context) == 1  # the young one, now past the grace
    assert svc.payment(unpaid.id).status == PaymentStatus.INITIATED
    assert _repairs_logged(svc, unpaid.id) == []


def test_a_pass_that_dies_between_lookup_and_apply_repairs_nothing_twice(
    svc: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, payment = _started(svc)
    _paid_at_stripe(svc, payment)
    real = reconcile.apply_lookup

    def die(*args: Any) -> int:
        raise Crash

    monkeypatch.setattr(reconcile, "apply_lookup", die)
    with pytest.raises(Crash):
        reconcile.run_pass(svc.context)
    assert svc.payment(payment.id).status == PaymentStatus.INITIATED
    assert svc.payment(payment.id).reconciled_at is not None  # claimed, then the process died

    # The process dies again, this time right after the commit of the effect.
    def apply_then_die(*args: Any) -> int:
        real(*args)
        raise Crash

    monkeypatch.setattr(reconcile, "apply_lookup", apply_then_die)
    time.sleep(0.02)  # the claim lasts until the next interval
    with pytest.raises(Crash):
        reconcile.run_pass(svc.context)

    monkeypatch.setattr(reconcile, "apply_lookup", real)
    time.sleep(0.02)
    assert reconcile.run_pass(svc.context) == 0
    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    assert len(svc.events("PaymentSucceeded")) == 1
    assert _repairs_logged(svc, payment.id) == ["reconcile paid"]


def test_a_session_paid_before_its_order_was_cancelled_is_refunded_not_expired(svc: Payments) -> None:
    user, payment = _started(svc)
    _paid_at_stripe(svc, payment)
    before = _reconciled("stripe", "paid_refunding")

    svc.deliver(OrderCancelled(order_id=payment.order_id, user_id=user, reason="payment timeout"))
    svc.drain()  # the cancellation looks first, and opens the refund
    svc.drain()  # the refund

    assert svc.stripe.calls.named("cancel") == []
    [refund] = svc.stripe.calls.named("refund")
    assert refund.amount == Decimal("1250.00")
    assert svc.payment(payment.id).status == PaymentStatus.REFUNDED
    assert svc.events("PaymentSucceeded") == []
    assert _repairs_logged(svc, payment.id) == ["reconcile paid_refunding"]
    assert _reconciled("stripe", "paid_refunding") == before + 1
    assert svc.rows("SELECT provider_cancel_due_at FROM payments")[0].provider_cancel_due_at is None


def test_an_unpaid_session_of_a_cancelled_order_is_expired(svc: Payments) -> None:
    user, payment = _started(svc)
    svc.deliver(OrderCancelled(order_id=payment.order_id, user_id=user, reason="payment timeout"))
    svc.drain()
    assert svc.stripe.calls.named("lookup") == [payment.provider_reference]
    assert svc.stripe.calls.named("cancel") == [payment.provider_reference]
    assert svc.payment(payment.id).status == PaymentStatus.CANCELLED


def _confirmed(svc: Payments, total: str = "1250.00") -> Payment:
    _, payment = _started(svc, total)
    _paid_at_stripe(svc, payment, total)
    with svc.context.uow() as uow:
        verdict = svc.stripe.sessions[payment.provider_reference or ""]
        assert apply_verdict(uow, verdict) == "payment succeeded"
        uow.commit()
    return svc.payment(payment.id)


def test_a_dashboard_refund_read_from_the_event_list_is_recorded_once(svc: Payments) -> None:
    payment = _confirmed(svc)
    intent = payment.provider_transaction_id or ""
    svc.stripe.event_list.append(_charge_refunded("evt_full", intent, 125000))
    before = _reconciled("stripe", "refund")

    assert reconcile.run_pass(svc.context) == 1
    # Read again (the cursor starts at the last event's second): the event is known, nothing happens.
    assert reconcile.run_pass(svc.context) == 0

    assert svc.payment(payment.id).status == PaymentStatus.REFUNDED
    [refunded] = [e["data"] for e in svc.events("PaymentRefunded")]
    assert (refunded["fully_refunded"], refunded["restock"], refunded["amount"]) == (True, True, "1250.00")
    assert _repairs_logged(svc, payment.id) == ["reconcile refund"]
    assert _reconciled("stripe", "refund") == before + 1
    assert svc.stripe.calls.named("refund") == []  # recorded, not asked for again


def test_a_partial_dashboard_refund_is_recorded_and_the_order_keeps_its_status(svc: Payments) -> None:
    payment = _confirmed(svc)
    svc.stripe.event_list.append(_charge_refunded("evt_part", payment.provider_transaction_id or "", 25000))
    before = _reconciled("stripe", "partial_refund")

    assert reconcile.run_pass(svc.context) == 1
    stored = svc.payment(payment.id)
    assert (stored.status, stored.refunded_amount) == (PaymentStatus.PARTIALLY_REFUNDED, Decimal("250.00"))
    [refunded] = [e["data"] for e in svc.events("PaymentRefunded")]
    assert (refunded["fully_refunded"], refunded["restock"]) == (False, False)
    assert _reconciled("stripe", "partial_refund") == before + 1


def test_an_event_whose_webhook_came_is_left_to_the_webhook(svc: Payments) -> None:
    payment = _confirmed(svc)
    event = _charge_refunded("evt_hooked", payment.provider_transaction_id or "", 125000)
    with svc.context.uow() as uow:
        store_event(uow, "stripe", event)
        uow.commit()
    svc.stripe.event_list.append(event)

    assert reconcile.run_pass(svc.context) == 0
    assert svc.events("PaymentRefunded") == []  # the events worker applies it, once


def test_the_event_list_is_read_by_one_replica_at_a_time_from_its_cursor(svc: Payments) -> None:
    assert reconcile._claim_cursor(svc.context, reconcile.STRIPE_CURSOR) is not None
    assert reconcile.reconcile_stripe_events(svc.context) == 0  # leased by "another replica"
    assert svc.stripe.calls.named("events") == []
    reconcile._release_cursor(svc.context, reconcile.STRIPE_CURSOR, 1_700_000_000, "evt_x")

    reconcile.reconcile_stripe_events(svc.context)
    assert svc.stripe.calls.named("events") == [1_700_000_000]


def test_the_first_reading_goes_back_the_lookback(svc: Payments) -> None:
    reconcile.reconcile_stripe_events(svc.context)
    [since] = svc.stripe.calls.named("events")
    assert abs(since - (time.time() - svc.context.settings.reconcile_events_lookback)) < 60


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (("initiated", "0"), ("succeeded", "0"), "paid"),
        (("cancelled", "0"), ("refund_pending", "0"), "paid_refunding"),
        (("initiated", "0"), ("failed", "0"), "failed"),
        (("initiated", "0"), ("cancelled", "0"), "cancelled"),
        (("succeeded", "0"), ("refunded", "10"), "refund"),
        (("succeeded", "0"), ("partially_refunded", "2"), "partial_refund"),
        (("succeeded", "0"), ("succeeded", "0"), None),
        (("refund_pending", "0"), ("refund_pending", "0"), None),
    ],
)
def test_what_a_repair_is_called(before: tuple[str, str], after: tuple[str, str], kind: str | None) -> None:
    assert repair_kind(PaymentState(before[0], Decimal(before[1])), PaymentState(after[0], Decimal(after[1]))) == kind


def test_a_verdict_about_no_payment_of_ours_repairs_nothing(svc: Payments) -> None:
    verdict = ProviderVerdict("stripe", Outcome.PAID, "cs_not_ours", "pi_x", Decimal("1.00"), "BDT")
    with svc.context.uow() as uow:
        assert repairs.apply_as_repair(uow, svc.context, verdict, "lookup") is None


def test_a_refund_read_before_its_success_is_applied_once_the_success_is_known(svc: Payments) -> None:
    _, payment = _started(svc)
    _paid_at_stripe(svc, payment)
    intent = f"pi_{payment.id.hex[:8]}"
    svc.stripe.event_list.append(_charge_refunded("evt_early", intent, 125000))
    svc.context.settings.reconcile_grace = 3600.0  # the payment itself is not looked up yet

    assert reconcile.run_pass(svc.context) == 0
    [stored] = svc.rows("SELECT processed_at FROM webhook_events WHERE provider_event_id = 'evt_early'")
    assert stored.processed_at is None  # kept for the events worker, not dropped
    assert stripe_webhooks.process_stored_events(svc.context) == 1  # tried: no such transaction yet
    [waiting] = svc.rows("SELECT processed_at, attempts FROM webhook_events WHERE provider_event_id = 'evt_early'")
    assert (waiting.processed_at, waiting.attempts) == (None, 1)

    with svc.context.uow() as uow:
        apply_verdict(uow, svc.stripe.sessions[payment.provider_reference or ""])
        uow.commit()
    with svc.db.engine.begin() as connection:
        connection.execute(text("UPDATE webhook_events SET retry_at = NULL"))
    assert stripe_webhooks.process_stored_events(svc.context) == 1
    assert svc.payment(payment.id).status == PaymentStatus.REFUNDED
    assert len(svc.events("PaymentRefunded")) == 1


def test_a_pass_goes_through_every_due_payment_batch_after_batch(
    svc: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "BATCH", 2)
    payments = [_started(svc)[1] for _ in range(5)]
    for payment in payments:
        _paid_at_stripe(svc, payment)
    assert reconcile.run_pass(svc.context) == 5
    assert {svc.payment(p.id).status for p in payments} == {PaymentStatus.SUCCEEDED}
    assert sorted(svc.stripe.calls.named("lookup")) == sorted(p.provider_reference for p in payments)


def test_the_claim_leaves_the_grace_clock_alone(svc: Payments) -> None:
    _, payment = _started(svc)
    before = svc.payment(payment.id).updated_at
    reconcile.claim_due(svc.context)
    claimed = svc.payment(payment.id)
    assert claimed.reconciled_at is not None and claimed.updated_at == before
