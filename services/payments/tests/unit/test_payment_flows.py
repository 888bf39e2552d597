"""Starting payments, recording what providers say, the orders view and the handlers, on fakes."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import event

from contracts import OrderCancelled, OrderLine, OrderPlaced, OrderShipped, new_envelope
from payments.domain import PaymentStatus, money
from payments.flows import queries, starting
from payments.flows.outcomes import apply_verdict
from payments.models import PayableOrder
from payments.providers.base import Outcome, ProviderRefused, ProviderUnavailable, ProviderVerdict
from shopkit.problems import Conflict, NotFound, ServiceUnavailable, Unprocessable

from .conftest import Payments, admin, customer

pytestmark = pytest.mark.unit


def _start(svc: Payments, user: uuid.UUID, order_id: uuid.UUID, provider: str = "stripe", key: str | None = None):  # type: ignore[no-untyped-def]
    return starting.start_payment(svc.context, customer(user), order_id, provider, key)


def _paid(svc: Payments, payment_id: uuid.UUID, *, reference: str | None = None, amount: str = "1250.00") -> str:
    payment = svc.payment(payment_id)
    verdict = ProviderVerdict(
        payment.provider,
        Outcome.PAID,
        reference=reference or payment.provider_reference,
        transaction_id="pi_fake",
        amount=Decimal(amount),
        currency="BDT",
    )
    with svc.context.uow() as uow:
        outcome = apply_verdict(uow, verdict)
        uow.commit()
    return outcome


def test_a_payment_is_opened_at_the_provider_with_the_orders_amount(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user, "860.00")

    started = _start(svc, user, order_id)

    assert started.created and started.payment.status == PaymentStatus.INITIATED
    assert started.payment.provider_reference == "cs_test_fake1"
    [checkout] = svc.stripe.calls.named("open")
    assert (checkout.amount, checkout.currency, checkout.order_id) == (Decimal("860.00"), "BDT", order_id)
    again = _start(svc, user, order_id)
    assert not again.created and again.payment.id == started.payment.id
    assert len(svc.stripe.calls.named("open")) == 1


def test_a_payment_asked_for_before_its_order_arrived_is_woken_by_the_orders_commit(
    svc: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Re-reads far apart: only the commit's wake-up can answer within the bound below.
    monkeypatch.setattr(starting, "NOT_RECEIVED_WAIT", 20.0)
    monkeypatch.setattr(starting, "NOT_RECEIVED_RECHECK", 10.0)
    user, order_id = uuid.uuid4(), uuid.uuid4()
    line = OrderLine(product_id=uuid.uuid4(), sku="SKU-1", name="Thing", unit_price=Decimal("10.00"), quantity=1)
    reads: list[str] = []

    def count_reads(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM payable_orders" in statement:
            reads.append(statement)

    def deliver_later() -> None:
        time.sleep(0.05)
        svc.deliver(
            OrderPlaced(order_id=order_id, user_id=user, currency="BDT", total_amount=money("10.00"), items=[line])
        )

    event.listen(svc.db.engine, "before_cursor_execute", count_reads)
    placer = threading.Thread(target=deliver_later)
    began = time.monotonic()
    placer.start()
    try:
        started = _start(svc, user, order_id)
    finally:
        placer.join()
        event.remove(svc.db.engine, "before_cursor_execute", count_reads)

    assert started.created and started.payment.order_id == order_id
    # Woken by the commit, not by the next re-read (10 s away).
    assert time.monotonic() - began < 5.0
    assert len(reads) == 2  # before the order arrived, and once woken


def test_a_payment_for_an_order_that_never_arrives_is_a_retryable_conflict_after_a_bounded_wait(
    svc: Payments,
) -> None:
    began = time.monotonic()
    with pytest.raises(Conflict) as refused:
        _start(svc, uuid.uuid4(), uuid.uuid4())
    waited = time.monotonic() - began
    assert refused.value.extra.get("retryable") is True
    assert starting.NOT_RECEIVED_WAIT <= waited < starting.NOT_RECEIVED_WAIT + 0.5


def test_unknown_foreign_or_unpayable_orders_are_refused(svc: Payments) -> None:
    owner = uuid.uuid4()
    with pytest.raises(Conflict, match="retry"):
        _start(svc, owner, uuid.uuid4())
    order_id = svc.place_order(owner, currency="USD")
    with pytest.raises(NotFound):
        _start(svc, uuid.uuid4(), order_id)
    with pytest.raises(Unprocessable, match="BDT"):
        _start(svc, owner, order_id, "bkash")
    svc.deliver(OrderCancelled(order_id=order_id, user_id=owner, reason="timeout"))
    with pytest.raises(Conflict, match="cancelled"):
        _start(svc, owner, order_id)
    assert svc.stripe.calls.log == [] and svc.bkash.calls.log == []


def test_switching_provider_cancels_the_first_payment_and_closes_it_after_the_commit(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    first = _start(svc, user, order_id, "stripe").payment

    second = _start(svc, user, order_id, "bkash").payment

    assert svc.payment(first.id).status == PaymentStatus.CANCELLED
    assert svc.stripe.calls.named("cancel") == []  # not inside the transaction that cancelled it
    assert svc.drain() == 1
    assert svc.stripe.calls.named("cancel") == [first.provider_reference]
    assert svc.drain() == 0  # asked once
    assert svc.payment(second.id).status == PaymentStatus.INITIATED


def test_a_refused_opening_leaves_a_failed_payment_that_nothing_can_mark_paid(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    svc.stripe.calls.fail_next.append(ProviderRefused("card_declined"))

    with pytest.raises(ServiceUnavailable):
        _start(svc, user, order_id)

    [failed] = svc.rows("SELECT id, status, provider_reference FROM payments")
    assert (failed.status, failed.provider_reference) == ("failed", None)
    # An attacker's session, signed and paid, claiming this payment in its metadata: no reference matches.
    assert "ignored" in _paid(svc, uuid.UUID(str(failed.id)), reference="cs_test_attackers_own")
    assert svc.payment(uuid.UUID(str(failed.id))).status == PaymentStatus.FAILED
    assert svc.events("PaymentSucceeded") == []


def test_only_the_reference_the_shop_created_marks_a_payment_paid(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    payment = _start(svc, user, order_id).payment

    assert "ignored" in _paid(svc, payment.id, reference="cs_test_someone_elses")
    assert svc.payment(payment.id).status == PaymentStatus.INITIATED

    assert _paid(svc, payment.id) == "payment succeeded"
    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    [succeeded] = svc.events("PaymentSucceeded")
    assert succeeded["data"]["amount"] == "1250.00" and succeeded["correlation_id"] == str(order_id)
    assert _paid(svc, payment.id) == "payment already succeeded"
    assert len(svc.events("PaymentSucceeded")) == 1


def test_a_late_success_of_a_cancelled_payment_is_refunded_never_paid(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    payment = _start(svc, user, order_id).payment
    svc.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="payment timeout"))
    assert svc.payment(payment.id).status == PaymentStatus.CANCELLED

    assert _paid(svc, payment.id).startswith("refunding")
    assert svc.payment(payment.id).status == PaymentStatus.REFUND_PENDING

    svc.drain()
    assert svc.payment(payment.id).status == PaymentStatus.REFUNDED
    assert svc.events("PaymentSucceeded") == []
    [refunded] = svc.events("PaymentRefunded")
    assert refunded["data"]["fully_refunded"] and not refunded["data"]["restock"]
    [call] = svc.stripe.calls.named("refund")
    assert (call.amount, call.transaction_id) == (Decimal("1250.00"), "pi_fake")


def test_a_second_success_for_a_paid_order_is_refunded(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    stripe_payment = _start(svc, user, order_id, "stripe").payment
    bkash_payment = _start(svc, user, order_id, "bkash").payment
    svc.bkash.authorise(bkash_payment.provider_reference or "")
    _paid(svc, bkash_payment.id)  # bKash paid the order ...

    outcome = _paid(svc, stripe_payment.id)  # ... and the replaced Stripe session was paid as well

    assert outcome.startswith("refunding")
    svc.drain()
    assert svc.payment(stripe_payment.id).status == PaymentStatus.REFUNDED
    assert svc.payment(bkash_payment.id).status == PaymentStatus.SUCCEEDED
    assert len(svc.events("PaymentSucceeded")) == 1


def test_an_amount_the_provider_did_not_take_in_full_is_not_paid(svc: Payments) -> None:
    user = uuid.uuid4()
    payment = _start(svc, user, svc.place_order(user)).payment

    assert "mismatch" in _paid(svc, payment.id, amount="1.00")

    assert svc.payment(payment.id).status == PaymentStatus.FAILED
    assert [e["data"]["payment_id"] for e in svc.events("PaymentFailed")] == [str(payment.id)]


def test_order_placed_batch_is_one_statement_and_a_cancellation_that_overtook_it_stays(svc: Payments) -> None:
    user = uuid.uuid4()
    early_cancelled = uuid.uuid4()
    svc.deliver(OrderCancelled(order_id=early_cancelled, user_id=user, reason="customer"))
    placed = [
        OrderPlaced(order_id=oid, user_id=user, currency="BDT", total_amount=Decimal("10.00"), items=[])
        for oid in [uuid.uuid4(), uuid.uuid4(), early_cancelled]
    ]
    statements: list[str] = []
    event.listen(svc.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    outcomes = svc.dispatcher.handle_batch([new_envelope(p, producer="orders") for p in placed])

    assert outcomes == [None, None, None]
    assert len([s for s in statements if "payable_orders" in s]) == 1
    with svc.context.uow() as uow:
        cancelled = uow.session.get(PayableOrder, early_cancelled)
        assert cancelled is not None and (cancelled.status, cancelled.amount) == ("cancelled", Decimal("10.00"))


def test_order_cancelled_records_the_intent_and_calls_no_provider_in_the_handler(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    payment = _start(svc, user, order_id).payment

    svc.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="payment timeout"))
    shipped_at = datetime(2026, 1, 1, tzinfo=UTC)
    svc.deliver(OrderShipped(order_id=order_id, user_id=user, carrier="x", tracking_number="y", shipped_at=shipped_at))

    assert svc.stripe.calls.named("cancel") == []
    [due] = svc.rows("SELECT provider_cancel_due_at FROM payments")
    assert due.provider_cancel_due_at is not None
    svc.drain()
    assert svc.stripe.calls.named("cancel") == [payment.provider_reference]
    assert svc.rows("SELECT provider_cancel_due_at FROM payments")[0].provider_cancel_due_at is None


def test_customers_list_their_own_and_admins_list_every_payment_filtered(svc: Payments) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    alices = _start(svc, alice, svc.place_order(alice)).payment
    bobs = _start(svc, bob, svc.place_order(bob), "bkash").payment
    _paid(svc, alices.id)

    with svc.context.uow() as uow:
        mine, total = queries.list_payments(uow, customer(alice), queries.PaymentFilters())
        assert [p.id for p in mine] == [alices.id] and total == 1
        every, total = queries.list_payments(uow, admin(), queries.PaymentFilters())
        assert {p.id for p in every} == {alices.id, bobs.id} and total == 2
        initiated, _ = queries.list_payments(uow, admin(), queries.PaymentFilters(status="initiated"))
        assert [p.id for p in initiated] == [bobs.id]
        by_provider, _ = queries.list_payments(uow, admin(), queries.PaymentFilters(provider="stripe"))
        assert [p.id for p in by_provider] == [alices.id]
        beyond, total = queries.list_payments(uow, admin(), queries.PaymentFilters(page=1_000_000))
        assert beyond == [] and total == 2
        with pytest.raises(NotFound):
            queries.get_payment(uow, customer(bob), alices.id)


def test_a_retry_after_the_provider_could_not_open_the_payment_opens_a_new_one(svc: Payments) -> None:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    svc.stripe.calls.fail_next.append(ProviderUnavailable("Stripe: 503"))
    with pytest.raises(ServiceUnavailable) as refused:
        _start(svc, user, order_id, key="k-1")
    assert refused.value.headers == {"Retry-After": starting.RETRY_AFTER}

    retried = _start(svc, user, order_id, key="k-1")
    assert retried.created and retried.payment.status == PaymentStatus.INITIATED
    assert _start(svc, user, order_id, key="k-1").payment.id == retried.payment.id
    statuses = sorted(row.status for row in svc.rows("SELECT status FROM payments"))
    assert statuses == ["failed", "initiated"]


def test_a_wave_of_cancelled_orders_is_closed_at_the_provider_several_at_once(svc: Payments, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Orders cancelled by their payment timeout while the shop was overloaded come in waves: closing
    their payments one provider round trip after the other would hold the refunds behind them."""
    user = uuid.uuid4()
    references = []
    for _ in range(6):
        order_id = svc.place_order(user)
        references.append(_start(svc, user, order_id).payment.provider_reference)
        svc.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="payment timeout"))
    at_once = most = 0
    lock = threading.Lock()
    closed: list[str] = []
    recorded = svc.stripe.cancel

    def slow_cancel(reference: str) -> None:
        nonlocal at_once, most
        with lock:
            at_once += 1
            most = max(most, at_once)
        time.sleep(0.2)  # the provider's round trip
        with lock:
            at_once -= 1
            closed.append(reference)
        recorded(reference)

    monkeypatch.setattr(svc.stripe, "cancel", slow_cancel)
    svc.drain()

    assert sorted(closed) == sorted(references)  # each once
    assert most >= 2
    assert [row.provider_cancel_due_at for row in svc.rows("SELECT provider_cancel_due_at FROM payments")] == [None] * 6
