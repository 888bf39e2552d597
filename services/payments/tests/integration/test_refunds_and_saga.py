"""Refunds at both providers, exactly once, and the saga rules for late or double successes."""

from __future__ import annotations

import uuid

import pytest

from contracts import OrderCancelled, RefundRequested
from shopkit.testing import local_http

pytestmark = pytest.mark.integration


def _start(shop, user, order_id, provider):  # type: ignore[no-untyped-def]
    answer = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": provider},
        headers=shop.headers(user),
        timeout=15,
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _status(shop, user, payment_id):  # type: ignore[no-untyped-def]
    return local_http.get(f"{shop.url}/api/payments/{payment_id}", headers=shop.headers(user)).json()["status"]


def _session(shop, session_id):  # type: ignore[no-untyped-def]
    return local_http.get(
        f"{shop.stripe_url}/v1/checkout/sessions/{session_id}",
        headers={"Authorization": f"Bearer {shop.settings.stripe_secret_key}"},
    ).json()


def _paid_with(shop, provider):  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id, provider)
    if provider == "stripe":
        shop.pay_stripe(payment["redirect_url"])
    else:
        shop.pay_bkash(payment["redirect_url"])
    shop.wait_for(lambda: _status(shop, user, payment["id"]) == "succeeded")
    return user, order_id, payment


@pytest.mark.parametrize("provider", ["stripe", "bkash"])
def test_refund_requested_refunds_once_at_the_provider(shop, provider) -> None:  # type: ignore[no-untyped-def]
    user, order_id, payment = _paid_with(shop, provider)
    request = RefundRequested(order_id=order_id, payment_id=uuid.UUID(payment["id"]), reason="stock rejected")

    shop.deliver(request)
    shop.deliver(RefundRequested(order_id=order_id, payment_id=uuid.UUID(payment["id"]), reason="again"))

    shop.wait_for(lambda: _status(shop, user, payment["id"]) == "refunded")
    refunded = shop.outbox("PaymentRefunded")
    assert [(e["data"]["payment_id"], e["data"]["amount"]) for e in refunded] == [(payment["id"], "1250.00")]
    assert len(shop.rows("SELECT id FROM refunds WHERE payment_id = :p", p=payment["id"])) == 1
    if provider == "bkash":
        state = local_http.get(f"{shop.bkash_url}/_control/payments/{payment['provider_reference']}").json()
        assert len(state["refunds"]) == 1 and state["refundedAmount"] == "1250.00"
    else:
        refunds = local_http.get(
            f"{shop.stripe_url}/v1/refunds",
            params={"payment_intent": payment_id_intent(shop, user, payment["id"])},
            headers={"Authorization": f"Bearer {shop.settings.stripe_secret_key}"},
        ).json()["data"]
        assert [r["amount"] for r in refunds] == [125000]


def payment_id_intent(shop, user, payment_id):  # type: ignore[no-untyped-def]
    body = local_http.get(f"{shop.url}/api/payments/{payment_id}", headers=shop.headers(user)).json()
    return body["provider_transaction_id"]


def test_admin_refund_is_202_and_never_refunds_twice(shop) -> None:  # type: ignore[no-untyped-def]
    user, _order_id, payment = _paid_with(shop, "bkash")
    admin = shop.headers(uuid.uuid4(), "admin")

    first = local_http.post(
        f"{shop.url}/api/payments/{payment['id']}/refund", json={"reason": "goodwill"}, headers=admin
    )
    second = local_http.post(f"{shop.url}/api/payments/{payment['id']}/refund", json={"reason": "again"}, headers=admin)

    assert first.status_code == 202 and second.status_code == 202
    shop.wait_for(lambda: _status(shop, user, payment["id"]) == "refunded")
    assert len(shop.outbox("PaymentRefunded")) == 1
    customer = local_http.post(
        f"{shop.url}/api/payments/{payment['id']}/refund", json={"reason": "me"}, headers=shop.headers(user)
    )
    assert customer.status_code == 403


def test_stripe_success_arriving_after_the_order_was_cancelled_is_refunded(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id, "stripe")
    secret = shop.settings.sandbox_stripe_webhook_secret
    shop.settings.sandbox_stripe_webhook_secret = "whsec_not_yet"  # hold the webhook back: deliveries get 400
    shop.pay_stripe(payment["redirect_url"])
    shop.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="payment timeout"))
    assert _status(shop, user, payment["id"]) == "cancelled"

    shop.settings.sandbox_stripe_webhook_secret = secret
    event = local_http.get(f"{shop.stripe_url}/_control/events", params={"type": "checkout.session.completed"}).json()
    local_http.post(f"{shop.stripe_url}/_control/events/{event['data'][0]['id']}/redeliver", timeout=15)

    shop.wait_for(lambda: _status(shop, user, payment["id"]) == "refunded")
    assert shop.outbox("PaymentSucceeded") == []
    refunded = shop.outbox("PaymentRefunded")
    assert len(refunded) == 1 and "cancelled" in refunded[0]["data"]["reason"]
    late = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": "bkash"},
        headers=shop.headers(user),
    )
    assert late.status_code == 409


def test_bkash_payment_of_a_cancelled_order_is_never_executed(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id, "bkash")
    shop.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="payment timeout"))

    landed = shop.pay_bkash(payment["redirect_url"])  # the customer finishes on bKash's page anyway

    assert landed.json()["status"] == "cancelled"
    state = local_http.get(f"{shop.bkash_url}/_control/payments/{payment['provider_reference']}").json()
    assert state["executeCalls"] == 0  # no Execute, no money taken
    assert shop.outbox("PaymentSucceeded") == []


def test_order_cancelled_expires_the_stripe_session(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id, "stripe")

    shop.deliver(OrderCancelled(order_id=order_id, user_id=user, reason="customer"))

    # The session is expired after the handler's commit, by the provider-calls worker.
    session = shop.wait_for(lambda: (s := _session(shop, payment["provider_reference"]))["status"] != "open" and s)
    assert session["status"] == "expired"
    assert _status(shop, user, payment["id"]) == "cancelled"


def test_switching_provider_cancels_the_first_and_a_second_success_is_refunded(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    stripe_payment = _start(shop, user, order_id, "stripe")
    again = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": "stripe"},
        headers=shop.headers(user),
    )
    assert again.status_code == 200 and again.json()["id"] == stripe_payment["id"]

    bkash_payment = _start(shop, user, order_id, "bkash")

    assert bkash_payment["id"] != stripe_payment["id"]
    assert _status(shop, user, stripe_payment["id"]) == "cancelled"
    session = shop.wait_for(
        lambda: (s := _session(shop, stripe_payment["provider_reference"]))["status"] != "open" and s
    )
    assert session["status"] == "expired"
    shop.pay_bkash(bkash_payment["redirect_url"])
    assert _status(shop, user, bkash_payment["id"]) == "succeeded"
    assert len(shop.outbox("PaymentSucceeded")) == 1
