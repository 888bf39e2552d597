"""What an attacker found, sent the way the attacker sends it, against the real service on PostgreSQL
with the real stripe library and the sandboxes: none of it marks a payment paid, cancels one, grows
the database or answers 500."""

from __future__ import annotations

import base64
import os
import time
import uuid
from typing import Any

import httpx
import psycopg2
import pytest
import stripe

from shopkit.testing import local_http

pytestmark = pytest.mark.integration


def _start(shop: Any, user: uuid.UUID, order_id: uuid.UUID, provider: str = "stripe") -> httpx.Response:
    return local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": provider},
        headers=shop.headers(user),
        timeout=15,
    )


def _payment(shop: Any, user: uuid.UUID, payment_id: str) -> dict[str, Any]:
    return local_http.get(f"{shop.url}/api/payments/{payment_id}", headers=shop.headers(user), timeout=15).json()


def _attackers_paid_session(shop: Any, victim: dict[str, Any]) -> str:
    """The sandbox takes any sk_test_ key: the attacker opens a session of their own that claims the
    victim's payment in its metadata, for the right amount, and pays it. The sandbox signs the
    webhook as it signs every other."""
    attacker = stripe.StripeClient("sk_test_attacker", base_addresses={"api": shop.stripe_url})
    metadata = {"order_id": victim["order_id"], "payment_id": victim["id"]}
    session = attacker.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {"currency": "bdt", "unit_amount": 125000, "product_data": {"name": "x"}},
                    "quantity": 1,
                }
            ],
            "success_url": "https://attacker.example/ok",
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
    )
    assert shop.pay_stripe(session.url).status_code == 200
    return str(session.id)


def _wait_applied(shop: Any, session_id: str) -> str:
    def outcome() -> str | None:
        rows = shop.rows(
            "SELECT outcome FROM webhook_events WHERE processed_at IS NOT NULL AND payload::text LIKE :s",
            s=f"%{session_id}%",
        )
        return rows[0].outcome if rows else None

    return str(shop.wait_for(outcome))


def test_a_session_the_shop_did_not_create_never_pays_a_payment(shop: Any) -> None:
    user = uuid.uuid4()
    victim = _start(shop, user, shop.place_order(user)).json()

    session_id = _attackers_paid_session(shop, victim)

    assert "no payment has this provider reference" in _wait_applied(shop, session_id)
    assert _payment(shop, user, victim["id"])["status"] == "initiated"
    assert shop.outbox("PaymentSucceeded") == []


def test_a_payment_the_provider_refused_to_open_never_succeeds(shop: Any) -> None:
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    ttl = shop.settings.stripe_session_ttl
    shop.settings.stripe_session_ttl = 3 * 86400  # Stripe refuses sessions living longer than 24 h
    try:
        refused = _start(shop, user, order_id)
    finally:
        shop.settings.stripe_session_ttl = ttl
    assert refused.status_code == 503
    [row] = shop.rows("SELECT id, status, provider_reference FROM payments WHERE order_id = :o", o=order_id)
    assert (row.status, row.provider_reference) == ("failed", None)

    session_id = _attackers_paid_session(shop, {"id": str(row.id), "order_id": str(order_id)})

    assert "no payment has this provider reference" in _wait_applied(shop, session_id)
    assert _payment(shop, user, str(row.id))["status"] == "failed"
    assert shop.outbox("PaymentSucceeded") == []


def test_sandbox_deliveries_are_verified_with_the_sandboxes_secret_only(shop: Any) -> None:
    """With no STRIPE_SECRET_KEY payments talks to the sandbox, and a real endpoint's secret (were it
    configured) verifies nothing: an event signed with STRIPE_WEBHOOK_SECRET is refused."""
    shop.settings.stripe_webhook_secret = "whsec_the_real_endpoints_secret"
    body = '{"id": "evt_x", "object": "event", "type": "checkout.session.completed", "data": {"object": {}}}'
    timestamp = int(time.time())
    sandbox_secret = shop.settings.sandbox_stripe_webhook_secret
    for secret, expected in (("whsec_the_real_endpoints_secret", 400), (sandbox_secret, 200)):
        signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body}", secret)
        answer = local_http.post(
            f"{shop.url}/api/payments/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"},
        )
        assert answer.status_code == expected, answer.text


def _schema_bytes(pg_url: str) -> int:
    connection = psycopg2.connect(pg_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'payments' AND c.relkind = 'r'"
            )
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def test_unsigned_webhooks_of_800_kb_grow_the_schema_by_a_few_kilobytes(shop: Any, pg_url: str) -> None:
    before = _schema_bytes(pg_url)
    for index in range(20):
        # Incompressible, so that TOAST compression cannot hide a stored body.
        filler = base64.b64encode(os.urandom(600_000)).decode()
        body = f'{{"id": "evt_{index}", "type": "checkout.session.completed", "filler": "{filler}"}}'
        answer = local_http.post(
            f"{shop.url}/api/payments/webhooks/stripe",
            content=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"},
            timeout=30,
        )
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("application/problem+json")
    grown = _schema_bytes(pg_url) - before

    assert grown < 200_000, f"the payments schema grew by {grown} bytes"
    rows = shop.rows("SELECT request FROM provider_log WHERE status = 400 AND operation = 'webhook'")
    assert len(rows) == 20 and all(len(row.request) < 2_000 and "sha256" in row.request for row in rows)


def test_a_forged_cancel_while_the_customer_is_on_bkash_leaves_the_payment_payable(shop: Any) -> None:
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id, "bkash").json()
    with httpx.Client(timeout=15) as browser:  # the customer is on bKash's page: wallet and OTP entered
        browser.post(f"{payment['redirect_url']}/wallet", data={"wallet": "01770618575"})
        browser.post(f"{payment['redirect_url']}/otp", data={"otp": "123456"})

        forged = local_http.get(  # anonymous, raw: no token, no cookie, the victim's paymentID
            f"{shop.url}/api/payments/bkash/callback?paymentID={payment['provider_reference']}&status=cancel"
        )
        assert forged.status_code == 200 and forged.json()["status"] == "initiated"
        assert _payment(shop, user, payment["id"])["status"] == "initiated"

        landed = browser.post(f"{payment['redirect_url']}/pin", data={"pin": "12121"}, follow_redirects=True)

    assert landed.json()["status"] == "succeeded"
    assert [e["data"]["payment_id"] for e in shop.outbox("PaymentSucceeded")] == [payment["id"]]
    assert shop.outbox("PaymentFailed") == []


@pytest.mark.parametrize(
    "query",
    ["page=100000000000000000000", "page=0", "page=1000001", "page=-1", "page_size=0", "page_size=101", "page=x"],
)
def test_out_of_range_paging_is_422(shop: Any, query: str) -> None:
    answer = local_http.get(f"{shop.url}/api/payments?{query}", headers=shop.headers(uuid.uuid4()))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_last_page_allowed_answers_an_empty_page(shop: Any) -> None:
    answer = local_http.get(f"{shop.url}/api/payments?page=1000000&page_size=100", headers=shop.headers(uuid.uuid4()))
    assert answer.status_code == 200
    assert answer.json() == {"items": [], "total": 0, "page": 1000000, "page_size": 100}


def test_the_webhook_is_acknowledged_while_the_order_is_locked_and_applied_once_released(
    shop: Any, pg_url: str
) -> None:
    """However long the saga holds the order (a backlog of its events), Stripe's delivery is stored
    and answered without waiting for it; the payment is settled once the lock is released."""
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start(shop, user, order_id).json()
    locker = psycopg2.connect(pg_url)
    try:
        with locker.cursor() as cursor:
            cursor.execute("SELECT 1 FROM payments.payable_orders WHERE order_id = %s FOR UPDATE", (str(order_id),))
            shop.pay_stripe(payment["redirect_url"])

            def delivered() -> bool:
                events = local_http.get(
                    f"{shop.stripe_url}/_control/events", params={"type": "checkout.session.completed"}
                )
                return any(e["delivery_status"] == "delivered" for e in events.json()["data"])

            assert shop.wait_for(delivered)  # 2xx while the order's row is still locked
            assert _payment(shop, user, payment["id"])["status"] == "initiated"  # not applied under the lock
    finally:
        locker.rollback()
        locker.close()
    shop.wait_for(lambda: _payment(shop, user, payment["id"])["status"] == "succeeded")
    assert len(shop.outbox("PaymentSucceeded")) == 1
