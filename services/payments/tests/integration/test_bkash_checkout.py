"""bKash: only the provider's answer marks a payment paid; Execute runs once; Query settles timeouts."""

from __future__ import annotations

import uuid

import pytest

from shopkit.testing import local_http

pytestmark = pytest.mark.integration


def _start_bkash(shop, user, order_id):  # type: ignore[no-untyped-def]
    answer = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": "bkash"},
        headers=shop.headers(user),
        timeout=15,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _sandbox_payment(shop, reference):  # type: ignore[no-untyped-def]
    return local_http.get(f"{shop.bkash_url}/_control/payments/{reference}").json()


def _callback(shop, reference, status="success"):  # type: ignore[no-untyped-def]
    return local_http.get(
        f"{shop.url}/api/payments/bkash/callback", params={"paymentID": reference, "status": status}, timeout=15
    )


def test_customer_pays_and_reloading_the_callback_executes_once(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start_bkash(shop, user, order_id)
    assert payment["provider_reference"].startswith("TR0011")

    landed = shop.pay_bkash(payment["redirect_url"])  # the browser follows the 303 to our callback
    assert landed.status_code == 200, landed.text
    assert landed.json() == {"payment_id": payment["id"], "order_id": str(order_id), "status": "succeeded"}
    for _ in range(3):
        assert _callback(shop, payment["provider_reference"]).json()["status"] == "succeeded"

    state = _sandbox_payment(shop, payment["provider_reference"])
    assert state["executeCalls"] == 1
    paid = local_http.get(f"{shop.url}/api/payments/{payment['id']}", headers=shop.headers(user)).json()
    assert paid["provider_transaction_id"] == state["trxID"]
    assert len(shop.outbox("PaymentSucceeded")) == 1


def test_forged_success_callback_does_not_mark_paid(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start_bkash(shop, user, order_id)

    forged = _callback(shop, payment["provider_reference"], "success")

    assert forged.status_code == 200
    assert forged.json()["status"] == "initiated"
    assert _sandbox_payment(shop, payment["provider_reference"])["transactionStatus"] == "Initiated"
    assert shop.outbox("PaymentSucceeded") == []
    # The customer can still finish the real payment afterwards.
    assert shop.pay_bkash(payment["redirect_url"]).json()["status"] == "succeeded"


def test_execute_that_times_out_is_resolved_by_query(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start_bkash(shop, user, order_id)
    delay = shop.settings.bkash_timeout + 1.0
    local_http.post(f"{shop.bkash_url}/_control/execute-delay", json={"seconds": delay}).raise_for_status()

    landed = shop.pay_bkash(payment["redirect_url"])

    assert landed.json()["status"] == "succeeded"
    state = _sandbox_payment(shop, payment["provider_reference"])
    assert state["executeCalls"] == 1
    operations = [
        row.operation
        for row in shop.rows(
            "SELECT operation FROM provider_log WHERE payment_id = :p ORDER BY created_at", p=payment["id"]
        )
    ]
    assert "execute" in operations and "query" in operations


def test_insufficient_balance_wallet_fails_and_order_stays_payable(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start_bkash(shop, user, order_id)

    landed = shop.pay_bkash(payment["redirect_url"], wallet="01929918378")

    assert landed.json()["status"] == "failed"
    failed = shop.outbox("PaymentFailed")
    assert [event["data"]["payment_id"] for event in failed] == [payment["id"]]
    again = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": "bkash"},
        headers=shop.headers(user),
        timeout=15,
    )
    assert again.status_code == 201 and again.json()["id"] != payment["id"]


def test_cancel_on_the_bkash_page_marks_cancelled(shop) -> None:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start_bkash(shop, user, order_id)

    landed = local_http.get(f"{payment['redirect_url']}/cancel", follow_redirects=True, timeout=15)

    assert landed.json()["status"] == "cancelled"


def test_callback_redirects_to_the_frontend_when_configured(shop) -> None:  # type: ignore[no-untyped-def]
    shop.settings.frontend_url = "http://shop.example/checkout/result"
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = _start_bkash(shop, user, order_id)
    # The customer cancels on bKash's page (a callback alone would not cancel: bKash is asked).
    assert local_http.get(f"{payment['redirect_url']}/cancel").status_code == 303

    answer = local_http.get(
        f"{shop.url}/api/payments/bkash/callback",
        params={"paymentID": payment["provider_reference"], "status": "cancel"},
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == (
        f"http://shop.example/checkout/result?payment_id={payment['id']}&status=cancelled"
    )
