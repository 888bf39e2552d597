"""Stripe: the real stripe library drives the Stripe sandbox; signed webhooks settle payments once."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import stripe

from shopkit.testing import local_http

pytestmark = pytest.mark.integration


def _start(shop, user, order_id, provider="stripe", **headers):  # type: ignore[no-untyped-def]
    return local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": provider},
        headers={**shop.headers(user), **headers},
        timeout=15,
    )


def test_checkout_paid_through_the_sandbox_emits_payment_succeeded_once(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user, lines=[("625.00", 2)])

    created = _start(shop, user, order_id)
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["amount"] == "1250.00" and payment["currency"] == "BDT"
    assert payment["status"] == "initiated" and payment["provider_reference"].startswith("cs_test_")
    session = local_http.get(
        f"{shop.stripe_url}/v1/checkout/sessions/{payment['provider_reference']}",
        headers={"Authorization": f"Bearer {shop.settings.stripe_secret_key}"},
    ).json()
    assert session["amount_total"] == 125000 and session["currency"] == "bdt"
    assert session["metadata"] == {"order_id": str(order_id), "payment_id": payment["id"]}

    assert shop.pay_stripe(payment["redirect_url"]).status_code == 200
    paid = shop.wait_for(
        lambda: (
            (body := local_http.get(f"{shop.url}/api/payments/{payment['id']}", headers=shop.headers(user)).json())[
                "status"
            ]
            == "succeeded"
            and body
        )
    )
    assert paid["provider_transaction_id"].startswith("pi_")
    succeeded = shop.outbox("PaymentSucceeded")
    assert len(succeeded) == 1
    data = succeeded[0]["data"]
    assert data["payment_id"] == payment["id"] and data["amount"] == "1250.00"
    assert [item["quantity"] for item in data["items"]] == [2]

    # Stripe delivers at least once: the same event five more times changes nothing.
    event_id = local_http.get(
        f"{shop.stripe_url}/_control/events", params={"type": "checkout.session.completed"}
    ).json()["data"][0]["id"]
    for _ in range(5):
        local_http.post(f"{shop.stripe_url}/_control/events/{event_id}/redeliver", timeout=15).raise_for_status()
    assert len(shop.outbox("PaymentSucceeded")) == 1
    assert len(shop.rows("SELECT id FROM webhook_events WHERE provider_event_id = :e", e=event_id)) == 1


def _signed(secret: str, body: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body}", secret)
    return f"t={timestamp},v1={signature}"


def _completed_event(payment: dict, amount_total: int = 125000, currency: str = "bdt") -> str:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "checkout.session.completed",
            "created": int(time.time()),
            "livemode": False,
            "data": {
                "object": {
                    "id": payment["provider_reference"],
                    "object": "checkout.session",
                    "status": "complete",
                    "payment_status": "paid",
                    "amount_total": amount_total,
                    "currency": currency,
                    "payment_intent": "pi_test_handmade",
                    "metadata": {"order_id": payment["order_id"], "payment_id": payment["id"]},
                }
            },
        }
    )


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "t=1,v1=deadbeef",
        "stale",
        "wrong-secret",
    ],
)
def test_webhook_with_bad_missing_or_stale_signature_is_400_and_changes_nothing(shop, signature) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id).json()
    body = _completed_event(payment)
    headers = {"Content-Type": "application/json"}
    if signature == "stale":
        headers["Stripe-Signature"] = _signed(shop.settings.stripe_webhook_secret, body, int(time.time()) - 3600)
    elif signature == "wrong-secret":
        headers["Stripe-Signature"] = _signed("whsec_someone_else", body)
    elif signature is not None:
        headers["Stripe-Signature"] = signature

    answer = local_http.post(f"{shop.url}/api/payments/webhooks/stripe", content=body, headers=headers)

    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert shop.rows("SELECT id FROM webhook_events") == []
    assert shop.outbox("PaymentSucceeded") == []
    current = local_http.get(f"{shop.url}/api/payments/{payment['id']}", headers=shop.headers(user)).json()
    assert current["status"] == "initiated"


def test_webhook_signed_like_stripe_is_accepted_and_amount_mismatch_is_not_paid(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id).json()

    wrong = _completed_event(payment, amount_total=100)
    answer = local_http.post(
        f"{shop.url}/api/payments/webhooks/stripe",
        content=wrong,
        headers={"Stripe-Signature": _signed(shop.settings.stripe_webhook_secret, wrong)},
    )
    assert answer.status_code == 200
    # Acknowledged once stored; the events worker applies it a moment later.
    current = shop.wait_for(
        lambda: (
            (body := local_http.get(f"{shop.url}/api/payments/{payment['id']}", headers=shop.headers(user)).json())[
                "status"
            ]
            != "initiated"
            and body
        )
    )
    assert current["status"] == "failed"
    assert shop.outbox("PaymentSucceeded") == []
