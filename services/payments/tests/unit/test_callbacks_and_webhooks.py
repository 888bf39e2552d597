"""The bKash callback, Stripe's webhooks, the provider log and the workers' wake-up, on fakes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
import stripe
from sqlalchemy import event, text, update

from payments import audit
from payments.context import Lane, wake_after_commit
from payments.domain import PaymentStatus, public_status
from payments.flows import bkash_flow, starting, stripe_webhooks
from payments.models import Payment, utcnow
from payments.providers.base import WebhookRejected
from payments.workers import Workers
from shopkit.problems import ServiceUnavailable

from .conftest import Payments, customer

pytestmark = pytest.mark.unit


def _bkash_payment(svc: Payments) -> Payment:
    user = uuid.uuid4()
    order_id = svc.place_order(user)
    return starting.start_payment(svc.context, customer(user), order_id, "bkash", None).payment


def _callback(svc: Payments, reference: str, status: str) -> Payment:
    query = {"paymentID": reference, "status": status}
    return bkash_flow.on_callback(svc.context, reference, status, "http://shop/api/payments/bkash/callback", query)


def test_a_forged_cancel_while_the_customer_pays_changes_nothing(svc: Payments) -> None:
    payment = _bkash_payment(svc)
    reference = payment.provider_reference or ""

    assert _callback(svc, reference, "cancel").status == PaymentStatus.INITIATED
    assert _callback(svc, reference, "failure").status == PaymentStatus.INITIATED
    assert svc.bkash.calls.named("query") == [reference, reference]  # bKash was asked both times

    svc.bkash.authorise(reference)  # wallet, OTP and PIN
    assert _callback(svc, reference, "success").status == PaymentStatus.SUCCEEDED
    assert len(svc.events("PaymentSucceeded")) == 1


def test_a_real_cancel_at_bkash_cancels(svc: Payments) -> None:
    payment = _bkash_payment(svc)
    svc.bkash.cancel_on_page(payment.provider_reference or "")

    assert _callback(svc, payment.provider_reference or "", "cancel").status == PaymentStatus.CANCELLED
    assert len(svc.events("PaymentFailed")) == 1


def test_a_forged_or_early_success_leaves_the_payment_payable_and_execute_runs_once_per_claim(svc: Payments) -> None:
    payment = _bkash_payment(svc)
    reference = payment.provider_reference or ""

    assert _callback(svc, reference, "success").status == PaymentStatus.INITIATED  # not authorised yet
    svc.bkash.authorise(reference)
    for _ in range(3):  # the customer's browser reloads the callback
        assert _callback(svc, reference, "success").status == PaymentStatus.SUCCEEDED

    assert len(svc.bkash.calls.named("execute")) == 2  # the early one, then the real one; never again
    assert len(svc.events("PaymentSucceeded")) == 1


def test_an_execute_whose_answer_is_lost_is_settled_by_the_stuck_sweep(svc: Payments) -> None:
    payment = _bkash_payment(svc)
    reference = payment.provider_reference or ""
    svc.bkash.authorise(reference)
    svc.bkash.execute_answer_lost = True

    assert svc.payment(payment.id).status == PaymentStatus.INITIATED
    # Execute and Query both unanswered: executing, which clients see as initiated.
    assert public_status(_callback(svc, reference, "success").status) == PaymentStatus.INITIATED
    assert svc.payment(payment.id).status == PaymentStatus.EXECUTING
    assert bkash_flow.settle_stuck_executions(svc.context) == 0  # not stuck for long enough yet
    with svc.context.uow() as uow:
        uow.session.execute(update(Payment).values(updated_at=utcnow() - timedelta(minutes=5)))
        uow.commit()

    assert bkash_flow.settle_stuck_executions(svc.context) == 1

    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    assert len(svc.bkash.calls.named("execute")) == 1


def test_a_cancelled_bkash_payment_is_never_executed(svc: Payments) -> None:
    payment = _bkash_payment(svc)
    reference = payment.provider_reference or ""
    with svc.context.uow() as uow:
        uow.session.execute(update(Payment).values(status=PaymentStatus.CANCELLED))
        uow.commit()
    svc.bkash.authorise(reference)

    assert _callback(svc, reference, "success").status == PaymentStatus.CANCELLED
    assert svc.bkash.calls.named("execute") == []


def _signed(svc: Payments, body: str) -> dict[str, str]:
    timestamp = int(time.time())
    secret = svc.context.settings.sandbox_stripe_webhook_secret
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body}", secret)
    return {"stripe-signature": f"t={timestamp},v1={signature}", "content-type": "application/json"}


def _completed(payment: Payment, event_id: str | None = None) -> str:
    session = {
        "id": payment.provider_reference,
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 125000,
        "currency": "bdt",
        "payment_intent": "pi_1",
        "metadata": {"payment_id": str(payment.id)},
    }
    event = {"id": event_id or f"evt_{uuid.uuid4().hex}", "type": "checkout.session.completed"}
    return json.dumps({**event, "object": "event", "data": {"object": session}})


def test_a_webhook_is_stored_once_and_applied_after_the_acknowledgement(svc: Payments) -> None:
    user = uuid.uuid4()
    payment = starting.start_payment(svc.context, customer(user), svc.place_order(user), "stripe", None).payment
    body = _completed(payment, "evt_once")

    for _ in range(3):  # Stripe delivers at least once
        stripe_webhooks.receive_stripe_webhook(svc.context, body.encode(), _signed(svc, body), "http://shop/w")

    assert svc.payment(payment.id).status == PaymentStatus.INITIATED  # stored, not applied yet
    assert len(svc.rows("SELECT id FROM webhook_events")) == 1
    assert stripe_webhooks.process_stored_events(svc.context) == 1
    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED
    assert stripe_webhooks.process_stored_events(svc.context) == 0
    [row] = svc.rows("SELECT outcome FROM webhook_events")
    assert row.outcome == "payment succeeded"
    assert len(svc.rows("SELECT id FROM provider_log WHERE operation = 'webhook'")) == 3


def test_an_event_that_cannot_be_applied_waits_and_does_not_hold_back_the_next(svc: Payments) -> None:
    user = uuid.uuid4()
    payment = starting.start_payment(svc.context, customer(user), svc.place_order(user), "stripe", None).payment
    poison = json.loads(_completed(payment))
    poison["data"]["object"]["amount_total"] = "not a number"
    for body in (json.dumps(poison), _completed(payment)):
        stripe_webhooks.receive_stripe_webhook(svc.context, body.encode(), _signed(svc, body), "http://shop/w")

    assert stripe_webhooks.process_stored_events(svc.context) == 2

    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED  # the later event went through
    [waiting] = svc.rows("SELECT attempts, retry_at, outcome FROM webhook_events WHERE processed_at IS NULL")
    assert waiting.attempts == 1 and waiting.retry_at is not None and "ValueError" in waiting.outcome
    for _ in range(stripe_webhooks.MAX_ATTEMPTS):
        with svc.context.uow() as uow:
            uow.session.execute(update(stripe_webhooks.EVENTS).values(retry_at=None))
            uow.commit()
        stripe_webhooks.process_stored_events(svc.context)
    [set_aside] = svc.rows("SELECT attempts, processed_at FROM webhook_events WHERE attempts > 0")
    assert set_aside.attempts == stripe_webhooks.MAX_ATTEMPTS and set_aside.processed_at is not None


def test_the_events_waiting_are_applied_in_one_transaction_found_by_one_read(svc: Payments) -> None:
    bodies = []
    payments = []
    for _ in range(3):
        user = uuid.uuid4()
        payment = starting.start_payment(svc.context, customer(user), svc.place_order(user), "stripe", None).payment
        payments.append(payment)
        bodies.append(_completed(payment))
    for body in bodies:
        stripe_webhooks.receive_stripe_webhook(svc.context, body.encode(), _signed(svc, body), "http://shop/w")
    commits: list[object] = []
    reads: list[str] = []

    def count_reads(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("SELECT") and "FROM webhook_events" in statement:
            reads.append(statement)

    def count_commits(session) -> None:  # type: ignore[no-untyped-def]
        commits.append(session)

    event.listen(svc.db.sessions, "after_commit", count_commits)
    event.listen(svc.db.engine, "before_cursor_execute", count_reads)
    try:
        assert stripe_webhooks.process_stored_events(svc.context) == 3
    finally:
        event.remove(svc.db.sessions, "after_commit", count_commits)
        event.remove(svc.db.engine, "before_cursor_execute", count_reads)

    assert [svc.payment(p.id).status for p in payments] == [PaymentStatus.SUCCEEDED] * 3
    assert len(commits) == 1 and len(reads) == 1
    assert len(svc.events("PaymentSucceeded")) == 3


def test_a_rejected_webhook_is_logged_as_a_digest_never_its_body(svc: Payments) -> None:
    body = b'{"id": "evt_forged", "type": "checkout.session.completed", "filler": "' + b"x" * 50_000 + b'"}'
    headers = {"stripe-signature": "t=1,v1=deadbeef", "content-type": "application/json"}

    with pytest.raises(WebhookRejected):
        stripe_webhooks.receive_stripe_webhook(svc.context, body, headers, "http://shop/w")

    assert svc.rows("SELECT id FROM webhook_events") == []
    [row] = svc.rows("SELECT request, status FROM provider_log")
    digest = json.loads(row.request)["rejected"]
    assert digest["size"] == len(body) and digest["sha256"] == hashlib.sha256(body).hexdigest()
    assert digest["headers"]["stripe-signature"] == "[REDACTED]"
    assert "xxxx" not in row.request and row.status == 400 and len(row.request) < 1000


def test_the_provider_log_is_pruned_after_the_retention(svc: Payments) -> None:
    svc.context.audit.inbound("bkash", "callback", "http://shop/cb", {"paymentID": "old"})
    svc.context.audit.inbound("bkash", "callback", "http://shop/cb", {"paymentID": "new"})
    with svc.context.uow() as uow:
        uow.session.execute(
            update(audit.TABLE)
            .where(audit.TABLE.c.request.contains("old"))
            .values(created_at=utcnow() - timedelta(days=91))
        )
        assert audit.prune(uow.session, timedelta(days=90)) == 1
        uow.commit()

    assert [json.loads(r.request)["paymentID"] for r in svc.rows("SELECT request FROM provider_log")] == ["new"]


def test_a_commit_that_records_work_wakes_its_worker_and_a_rollback_does_not(svc: Payments) -> None:
    workers = Workers(svc.context)
    woken = threading.Event()
    workers.lanes[Lane.PROVIDER].wake = woken.set  # type: ignore[method-assign]

    with svc.context.uow() as uow:
        uow.session.execute(text("UPDATE payments SET status = status"))
        wake_after_commit(uow, Lane.PROVIDER)
        uow.rollback()
        uow.session.execute(text("UPDATE payments SET status = status"))
        uow.commit()
    assert not woken.is_set()

    with svc.context.uow() as uow:
        uow.session.execute(text("UPDATE payments SET status = status"))
        wake_after_commit(uow, Lane.PROVIDER)
        uow.commit()
    assert woken.is_set()


def test_a_woken_worker_applies_a_stored_webhook_within_milliseconds(svc: Payments) -> None:
    user = uuid.uuid4()
    payment = starting.start_payment(svc.context, customer(user), svc.place_order(user), "stripe", None).payment
    svc.context.settings.sweep_interval = 60.0  # so that only the wake-up can explain the outcome
    workers = Workers(svc.context)
    workers.start()
    try:
        body = _completed(payment)
        stripe_webhooks.receive_stripe_webhook(svc.context, body.encode(), _signed(svc, body), "http://shop/w")
        deadline = time.monotonic() + 10
        while svc.payment(payment.id).status != PaymentStatus.SUCCEEDED and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        workers.stop()
    assert svc.payment(payment.id).status == PaymentStatus.SUCCEEDED


def test_new_payments_wait_while_acknowledged_webhooks_wait_too_long(svc: Payments) -> None:
    user = uuid.uuid4()
    payment = starting.start_payment(svc.context, customer(user), svc.place_order(user), "stripe", None).payment
    body = _completed(payment)
    stripe_webhooks.receive_stripe_webhook(svc.context, body.encode(), _signed(svc, body), "http://shop/w")
    backlog = stripe_webhooks.WebhookBacklog(svc.db, limit=5.0, every=0.0)
    context = dataclasses.replace(svc.context, backlog=backlog)
    another = svc.place_order(user)
    starting.start_payment(context, customer(user), another, "stripe", None)  # a webhook just received: fine

    with svc.context.uow() as uow:  # the worker has not got to it for a minute
        uow.session.execute(update(stripe_webhooks.EVENTS).values(received_at=utcnow() - timedelta(seconds=60)))
        uow.commit()
    with pytest.raises(ServiceUnavailable) as refused:
        starting.start_payment(context, customer(user), svc.place_order(user), "stripe", None)
    assert refused.value.headers == {"Retry-After": "30"}
    assert len(svc.rows("SELECT id FROM payments")) == 2  # the refused request wrote nothing

    assert stripe_webhooks.process_stored_events(svc.context) == 1
    starting.start_payment(context, customer(user), svc.place_order(user), "stripe", None)
    assert len(svc.rows("SELECT id FROM payments")) == 3


def test_a_batch_of_events_finds_and_locks_its_payments_and_orders_in_three_reads(svc: Payments) -> None:
    payments = []
    for _ in range(5):
        user = uuid.uuid4()
        payments.append(
            starting.start_payment(svc.context, customer(user), svc.place_order(user), "stripe", None).payment
        )
    bodies = [_completed(payment) for payment in payments]
    bodies.append(_completed(payments[0]))  # the same payment twice in the batch: applied once
    for body in bodies:
        stripe_webhooks.receive_stripe_webhook(svc.context, body.encode(), _signed(svc, body), "http://shop/w")
    statements: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.lstrip())

    event.listen(svc.db.engine, "before_cursor_execute", record)
    try:
        assert stripe_webhooks.process_stored_events(svc.context) == 6
    finally:
        event.remove(svc.db.engine, "before_cursor_execute", record)

    reads = [s for s in statements if s.startswith("SELECT") and ("FROM payments" in s or "FROM payable_orders" in s)]
    assert len(reads) == 3, reads  # was three for each event
    marks = [s for s in statements if s.startswith("UPDATE webhook_events")]
    assert len(marks) == 1  # one statement for the batch's marks
    assert [svc.payment(p.id).status for p in payments] == [PaymentStatus.SUCCEEDED] * 5
    assert len(svc.events("PaymentSucceeded")) == 5
    outcomes = sorted(row.outcome for row in svc.rows("SELECT outcome FROM webhook_events"))
    assert outcomes == ["payment already succeeded"] + ["payment succeeded"] * 5
