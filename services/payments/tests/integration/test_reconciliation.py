"""Reconciliation on PostgreSQL against the real sandboxes (the real stripe library): webhooks dropped
at the sandbox, payments found paid by lookup, two passes at once applying each repair once, a refund
made in the dashboard read back from GET /v1/events, a paid session of a cancelled order refunded."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from contracts import OrderCancelled
from payments.flows import reconcile
from payments.providers import stripe as stripe_provider

pytestmark = pytest.mark.integration


def _start(shop: Any, user: uuid.UUID, order_id: uuid.UUID, provider: str = "stripe") -> dict[str, Any]:
    answer = httpx.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": provider},
        headers=shop.headers(user),
        timeout=15,
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _payment(shop: Any, payment_id: str) -> dict[str, Any]:
    with shop.app.state.payments.uow() as uow:
        row = uow.session.execute(
            reconcile.select(reconcile.Payment).where(reconcile.Payment.id == uuid.UUID(payment_id))
        ).scalar_one()
        return {"status": row.status, "refunded": row.refunded_amount, "intent": row.provider_transaction_id}


def _webhooks(shop: Any, mode: str) -> None:
    httpx.post(f"{shop.stripe_url}/_control/webhooks", json={"mode": mode}, timeout=10).raise_for_status()


def _refunds_at_stripe(shop: Any, intent: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{shop.stripe_url}/v1/refunds",
        params={"payment_intent": intent},
        headers={"Authorization": f"Bearer {shop.settings.stripe_secret_key}"},
        timeout=10,
    )
    return list(answer.json()["data"])


def _repairs(shop: Any) -> list[str]:
    return [row.operation for row in shop.rows("SELECT operation FROM provider_log WHERE direction = 'repair'")]


@pytest.fixture
def context(shop: Any) -> Any:
    context = shop.app.state.payments
    context.settings.reconcile_grace = 0.0
    context.settings.reconcile_interval = 3600.0  # one look per payment in these tests
    return context


def test_two_passes_at_once_confirm_each_dropped_payment_once(shop: Any, context: Any) -> None:
    _webhooks(shop, "drop")
    payments = []
    for _ in range(6):
        user = uuid.uuid4()
        payment = _start(shop, user, shop.place_order(user))
        assert shop.pay_stripe(payment["redirect_url"]).status_code == 200
        payments.append(payment)
    assert all(_payment(shop, p["id"])["status"] == "initiated" for p in payments)

    repaired: list[int] = []
    passes = [threading.Thread(target=lambda: repaired.append(reconcile.run_pass(context))) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join(60)

    assert sum(repaired) == 6
    assert all(_payment(shop, p["id"])["status"] == "succeeded" for p in payments)
    assert len(shop.outbox("PaymentSucceeded")) == 6
    assert _repairs(shop) == ["reconcile paid"] * 6
    # Nothing is left to do: a later pass (a third replica) repairs nothing.
    context.settings.reconcile_interval = 0.01
    assert reconcile.run_pass(context) == 0
    assert len(shop.outbox("PaymentSucceeded")) == 6


def test_a_dashboard_refund_is_read_from_the_event_list_once(shop: Any, context: Any) -> None:
    user = uuid.uuid4()
    payment = _start(shop, user, shop.place_order(user, lines=[("500.00", 2)]))
    shop.pay_stripe(payment["redirect_url"])
    shop.wait_for(lambda: _payment(shop, payment["id"])["status"] == "succeeded")
    intent = _payment(shop, payment["id"])["intent"]

    _webhooks(shop, "drop")
    refund = httpx.post(f"{shop.stripe_url}/_control/payment_intents/{intent}/refund", json={"amount": 30000})
    assert refund.status_code == 200, refund.text
    assert reconcile.run_pass(context) == 1
    partial = _payment(shop, payment["id"])
    assert (partial["status"], str(partial["refunded"])) == ("partially_refunded", "300.00")

    httpx.post(f"{shop.stripe_url}/_control/payment_intents/{intent}/refund", json={}).raise_for_status()
    assert reconcile.run_pass(context) == 1
    assert reconcile.run_pass(context) == 0  # the same events read again change nothing
    full = _payment(shop, payment["id"])
    assert (full["status"], str(full["refunded"])) == ("refunded", "1000.00")
    refunded = [e["data"] for e in shop.outbox("PaymentRefunded")]
    assert [(e["amount"], e["fully_refunded"]) for e in refunded] == [("300.00", False), ("700.00", True)]
    assert _repairs(shop) == ["reconcile partial_refund", "reconcile refund"]
    assert len(_refunds_at_stripe(shop, intent)) == 2  # the shop asked for none of its own


def test_a_paid_session_of_a_cancelled_order_is_refunded_before_any_expiry(shop: Any, context: Any) -> None:
    _webhooks(shop, "drop")
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id)
    shop.pay_stripe(payment["redirect_url"])

    shop.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="payment timeout"))
    shop.wait_for(lambda: _payment(shop, payment["id"])["status"] == "refunded", timeout=30)
    intent = _payment(shop, payment["id"])["intent"]
    [refund] = _refunds_at_stripe(shop, intent)
    assert refund["amount"] == 125000
    assert shop.outbox("PaymentSucceeded") == []
    assert _repairs(shop) == ["reconcile paid_refunding"]


def test_a_bkash_payment_nobody_finished_is_left_open(shop: Any, context: Any) -> None:
    user = uuid.uuid4()
    payment = _start(shop, user, shop.place_order(user), "bkash")
    # The customer went through bKash's pages but never came back: bKash has not executed it.
    shop.pay_bkash(payment["redirect_url"], follow=False)
    assert reconcile.run_pass(context) == 0
    assert _payment(shop, payment["id"])["status"] == "initiated"
    assert _repairs(shop) == []


def test_the_event_list_is_read_page_after_page_oldest_first(
    shop: Any, context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = uuid.uuid4()
    payment = _start(shop, user, shop.place_order(user, lines=[("500.00", 2)]))
    shop.pay_stripe(payment["redirect_url"])
    shop.wait_for(lambda: _payment(shop, payment["id"])["status"] == "succeeded")
    intent = _payment(shop, payment["id"])["intent"]
    _webhooks(shop, "drop")
    for amount in (10000, 20000, 30000):
        httpx.post(
            f"{shop.stripe_url}/_control/payment_intents/{intent}/refund", json={"amount": amount}
        ).raise_for_status()

    monkeypatch.setattr(stripe_provider, "EVENTS_PAGE", 1)
    events = context.providers.stripe.events_since(0, ("charge.refunded",))
    assert [e["data"]["object"]["amount_refunded"] for e in events] == [10000, 30000, 60000]

    assert reconcile.run_pass(context) == 3
    stored = _payment(shop, payment["id"])
    assert (stored["status"], str(stored["refunded"])) == ("partially_refunded", "600.00")
    assert [e["data"]["amount"] for e in shop.outbox("PaymentRefunded")] == ["100.00", "200.00", "300.00"]
