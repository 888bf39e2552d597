"""Partial refunds at both sandboxes through the API and RefundRequested v2; refunds made in Stripe's
dashboard; the admin's list of every payment for the audit tool."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from contracts import RefundRequested
from shopkit.testing import local_http

pytestmark = pytest.mark.integration


def _paid(shop: Any, provider: str) -> tuple[uuid.UUID, dict[str, Any]]:
    user = uuid.uuid4()
    order_id = shop.place_order(user)
    payment = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(order_id), "provider": provider},
        headers=shop.headers(user),
        timeout=15,
    ).json()
    if provider == "stripe":
        shop.pay_stripe(payment["redirect_url"])
    else:
        shop.pay_bkash(payment["redirect_url"])
    return user, shop.wait_for(lambda: (p := _get(shop, user, payment["id"]))["status"] == "succeeded" and p)


def _get(shop: Any, user: uuid.UUID, payment_id: str) -> dict[str, Any]:
    return local_http.get(f"{shop.url}/api/payments/{payment_id}", headers=shop.headers(user), timeout=15).json()


def _refund(shop: Any, payment_id: str, **body: Any) -> httpx.Response:
    return local_http.post(
        f"{shop.url}/api/payments/{payment_id}/refund",
        json={"reason": "customer service", **body},
        headers=shop.headers(uuid.uuid4(), "admin"),
        timeout=15,
    )


def _stripe_refunds(shop: Any, intent: str) -> list[int]:
    answer = local_http.get(
        f"{shop.stripe_url}/v1/refunds",
        params={"payment_intent": intent},
        headers={"Authorization": f"Bearer {shop.settings.stripe_secret_key}"},
    )
    return sorted(r["amount"] for r in answer.json()["data"])


@pytest.mark.parametrize("provider", ["stripe", "bkash"])
def test_a_partial_refund_then_the_rest_at_the_provider(shop: Any, provider: str) -> None:
    user, payment = _paid(shop, provider)

    first = _refund(shop, payment["id"], amount="400.00")
    assert first.status_code == 202, first.text
    partly = shop.wait_for(lambda: (p := _get(shop, user, payment["id"]))["status"] == "partially_refunded" and p)
    assert (partly["refunded_amount"], partly["captured_amount"]) == ("400.00", "1250.00")
    too_much = _refund(shop, payment["id"], amount="850.01")
    assert too_much.status_code == 422 and "850.00" in too_much.json()["detail"]
    assert _refund(shop, payment["id"]).status_code == 202  # the rest
    done = shop.wait_for(lambda: (p := _get(shop, user, payment["id"]))["status"] == "refunded" and p)

    assert done["refunded_amount"] == "1250.00"
    events = [e["data"] for e in shop.outbox("PaymentRefunded")]
    assert [(e["amount"], e["refunded_amount"], e["fully_refunded"]) for e in events] == [
        ("400.00", "400.00", False),
        ("850.00", "1250.00", True),
    ]
    if provider == "stripe":
        assert _stripe_refunds(shop, payment["provider_transaction_id"]) == [40000, 85000]
    else:
        state = local_http.get(f"{shop.bkash_url}/_control/payments/{payment['provider_reference']}").json()
        assert sorted(r["amount"] for r in state["refunds"]) == ["400.00", "850.00"]


def test_bkash_refuses_an_eleventh_refund_of_one_payment_and_the_sandbox_holds_ten(shop: Any) -> None:
    user, payment = _paid(shop, "bkash")
    for n in range(1, 11):
        asked = _refund(shop, payment["id"], amount="10.00")
        assert asked.status_code == 202, asked.text
        shop.wait_for(lambda n=n: _get(shop, user, payment["id"])["refunded_amount"] == f"{10 * n}.00")

    eleventh = _refund(shop, payment["id"], amount="10.00")
    assert eleventh.status_code == 409, eleventh.text
    assert eleventh.headers["content-type"].startswith("application/problem+json")
    assert "at most 10" in eleventh.json()["detail"]
    rest = _refund(shop, payment["id"])  # the rest, in one more refund, is an eleventh too
    assert rest.status_code == 409, rest.text

    after = _get(shop, user, payment["id"])
    assert (after["status"], after["refunded_amount"]) == ("partially_refunded", "100.00")
    state = local_http.get(f"{shop.bkash_url}/_control/payments/{payment['provider_reference']}").json()
    assert [r["amount"] for r in state["refunds"]] == ["10.00"] * 10
    assert len(shop.outbox("PaymentRefunded")) == 10


def test_refund_requested_v2_refunds_what_it_names_and_says_whether_to_restock(shop: Any) -> None:
    user, payment = _paid(shop, "stripe")
    order_id = uuid.UUID(payment["order_id"])

    shop.deliver(RefundRequested(order_id=order_id, reason="one item missing", amount="125.00", restock=False))
    shop.wait_for(lambda: _get(shop, user, payment["id"])["refunded_amount"] == "125.00")
    shop.deliver(RefundRequested(order_id=order_id, reason="stock rejected", restock=True))
    shop.wait_for(lambda: _get(shop, user, payment["id"])["status"] == "refunded")

    events = [e["data"] for e in shop.outbox("PaymentRefunded")]
    assert [(e["amount"], e["restock"]) for e in events] == [("125.00", False), ("1125.00", True)]
    assert _stripe_refunds(shop, payment["provider_transaction_id"]) == [12500, 112500]


def test_a_partial_refund_in_stripes_dashboard_is_recorded_once(shop: Any) -> None:
    user, payment = _paid(shop, "stripe")

    intent = payment["provider_transaction_id"]
    dashboard = local_http.post(f"{shop.stripe_url}/_control/payment_intents/{intent}/refund", json={"amount": 30000})
    assert dashboard.status_code == 200, dashboard.text

    refunded = shop.wait_for(lambda: (p := _get(shop, user, payment["id"]))["refunded_amount"] == "300.00" and p)
    assert refunded["status"] == "partially_refunded"
    [event] = [e["data"] for e in shop.outbox("PaymentRefunded")]
    assert (event["amount"], event["fully_refunded"]) == ("300.00", False)


def test_admins_list_every_payment_with_filters_and_customers_only_their_own(shop: Any) -> None:
    alice, paid = _paid(shop, "bkash")
    bob = uuid.uuid4()
    bobs_order = shop.place_order(bob)
    open_payment = local_http.post(
        f"{shop.url}/api/payments",
        json={"order_id": str(bobs_order), "provider": "stripe"},
        headers=shop.headers(bob),
        timeout=15,
    ).json()
    admin = shop.headers(uuid.uuid4(), "admin")

    def listed(**params: Any) -> dict[str, Any]:
        answer = local_http.get(f"{shop.url}/api/payments", params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    every = listed()
    assert every["total"] == 2 and {p["id"] for p in every["items"]} == {paid["id"], open_payment["id"]}
    first = next(p for p in every["items"] if p["id"] == paid["id"])
    assert {k: first[k] for k in ("amount", "captured_amount", "refunded_amount", "status", "provider")} == {
        "amount": "1250.00",
        "captured_amount": "1250.00",
        "refunded_amount": "0.00",
        "status": "succeeded",
        "provider": "bkash",
    }
    assert [p["id"] for p in listed(status="succeeded")["items"]] == [paid["id"]]
    assert [p["id"] for p in listed(provider="stripe")["items"]] == [open_payment["id"]]
    assert [p["id"] for p in listed(order_id=str(bobs_order))["items"]] == [open_payment["id"]]
    assert listed(page_size=1, page=2)["items"][0]["id"] in {paid["id"], open_payment["id"]}
    assert local_http.get(f"{shop.url}/api/payments", params={"status": "nonsense"}, headers=admin).status_code == 422
    mine = local_http.get(f"{shop.url}/api/payments", headers=shop.headers(alice)).json()
    assert [p["id"] for p in mine["items"]] == [paid["id"]] and mine["total"] == 1
