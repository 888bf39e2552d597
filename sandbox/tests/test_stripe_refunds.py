"""Partial refunds through the API and "in the dashboard", and what the charge then shows."""

from __future__ import annotations

import threading

import httpx
import pytest
import stripe

from sandbox.tests.conftest import StripeSandbox, WebhookReceiver
from sandbox.tests.test_stripe_sandbox import paid_session
from shopkit.testing import local_http

TOTAL = 300000  # what paid_session charges: 2 x 125000 + 50000 (3000.00 BDT)


def dashboard_refund(sandbox: StripeSandbox, intent: str, amount: int | None = None) -> httpx.Response:
    body = {} if amount is None else {"amount": amount}
    return sandbox.http.post(f"{sandbox.base_url}/_control/payment_intents/{intent}/refund", json=body)


def test_several_partial_refunds_up_to_the_captured_amount(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    intent = str(paid_session(stripe_sandbox).payment_intent)
    refunds = stripe_sandbox.client.v1.refunds

    amounts = [refunds.create(params={"payment_intent": intent, "amount": a}).amount for a in (1000, 2000, 3000)]
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        refunds.create(params={"payment_intent": intent, "amount": TOTAL - 6000 + 1})
    last = refunds.create(params={"payment_intent": intent, "amount": TOTAL - 6000})

    assert amounts == [1000, 2000, 3000]
    assert too_much.value.http_status == 400
    assert too_much.value.code == "amount_too_large"
    assert too_much.value.param == "amount"
    assert str(too_much.value.user_message) == (
        "Refund amount (৳2,940.01) is greater than unrefunded amount on charge (৳2,940.00)"
    )
    assert last.amount == TOTAL - 6000
    charge = stripe_sandbox.client.v1.charges.retrieve(
        str(stripe_sandbox.client.v1.payment_intents.retrieve(intent).latest_charge),
        params={"expand": ["refunds"]},
    )
    assert (charge.amount_refunded, charge.refunded) == (TOTAL, True)
    assert charge.refunds is not None
    assert [r.amount for r in charge.refunds.data] == [TOTAL - 6000, 3000, 2000, 1000]
    refunded = [e.data.object for e in webhook_receiver.wait_for("charge.refunded", count=4)]
    assert sorted((c.amount_refunded, c.refunded) for c in refunded) == [
        (1000, False),
        (3000, False),
        (6000, False),
        (TOTAL, True),
    ]
    assert sorted(c.refunds.total_count for c in refunded) == [1, 2, 3, 4]


def test_a_charge_shows_its_refunds_only_when_expanded(stripe_sandbox: StripeSandbox) -> None:
    intent = stripe_sandbox.client.v1.payment_intents.retrieve(str(paid_session(stripe_sandbox).payment_intent))
    stripe_sandbox.client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 10})

    plain = stripe_sandbox.client.v1.charges.retrieve(str(intent.latest_charge))
    expanded = stripe_sandbox.client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})

    assert "refunds" not in plain
    assert plain.amount_refunded == 10
    assert isinstance(expanded.latest_charge, stripe.Charge)
    assert expanded.latest_charge.refunds is not None
    assert [r.amount for r in expanded.latest_charge.refunds.data] == [10]
    listed = stripe_sandbox.http.get(
        f"{stripe_sandbox.base_url}/v1/charges/{plain.id}/refunds", headers={"Authorization": "Bearer sk_test_x"}
    )
    assert [r["amount"] for r in listed.json()["data"]] == [10]


def test_the_same_idempotency_key_makes_one_partial_refund(stripe_sandbox: StripeSandbox) -> None:
    intent = str(paid_session(stripe_sandbox).payment_intent)
    refunds = stripe_sandbox.client.v1.refunds
    params = {"payment_intent": intent, "amount": 500}

    first = refunds.create(params=params, options={"idempotency_key": "refund-a"})
    again = refunds.create(params=params, options={"idempotency_key": "refund-a"})
    other = refunds.create(params=params, options={"idempotency_key": "refund-b"})

    assert again.id == first.id
    assert other.id != first.id
    assert [r.id for r in refunds.list(params={"payment_intent": intent}).data] == [other.id, first.id]


def test_concurrent_partial_refunds_never_exceed_the_charge(stripe_sandbox: StripeSandbox) -> None:
    intent = str(paid_session(stripe_sandbox).payment_intent)
    results: list[int] = []
    lock = threading.Lock()

    def refund() -> None:
        response = local_http.post(
            f"{stripe_sandbox.base_url}/v1/refunds",
            data={"payment_intent": intent, "amount": str(TOTAL // 4)},
            headers={"Authorization": "Bearer sk_test_sandbox"},
            timeout=10,
        )
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=refund) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [200] * 4 + [400] * 2
    latest = stripe_sandbox.client.v1.payment_intents.retrieve(intent, params={"expand": ["latest_charge"]})
    assert isinstance(latest.latest_charge, stripe.Charge)
    assert latest.latest_charge.amount_refunded == TOTAL


def test_dashboard_refund_of_part_then_the_rest(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    intent = str(paid_session(stripe_sandbox).payment_intent)

    partial = dashboard_refund(stripe_sandbox, intent, 100000)
    rest = dashboard_refund(stripe_sandbox, intent)
    again = dashboard_refund(stripe_sandbox, intent, 1)

    assert partial.status_code == 200
    assert partial.json()["object"] == "refund"
    assert partial.json()["amount"] == 100000
    assert rest.json()["amount"] == TOTAL - 100000
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "charge_already_refunded"
    # The shop hears of it only through charge.refunded, which shows the whole story.
    (first, second) = sorted(
        (e.data.object for e in webhook_receiver.wait_for("charge.refunded", count=2)), key=lambda c: c.amount_refunded
    )
    assert (first.amount_refunded, first.refunded, first.refunds.total_count) == (100000, False, 1)
    assert (second.amount_refunded, second.refunded, second.refunds.total_count) == (TOTAL, True, 2)
    assert [r.amount for r in second.refunds.data] == [TOTAL - 100000, 100000]
    assert {r.reason for r in second.refunds.data} == {None}
    listed = stripe_sandbox.client.v1.refunds.list(params={"payment_intent": intent})
    assert [r.id for r in listed.data] == [rest.json()["id"], partial.json()["id"]]


def test_dashboard_refund_follows_the_webhook_mode(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    intent = str(paid_session(stripe_sandbox).payment_intent)
    webhook_receiver.wait_for("checkout.session.completed")
    stripe_sandbox.control("/webhooks", {"mode": "drop"})

    refund = dashboard_refund(stripe_sandbox, intent, 2500).json()

    (event,) = stripe_sandbox.client.v1.events.list(params={"type": "charge.refunded"}).data
    assert event.data.object.amount_refunded == 2500
    assert stripe_sandbox.wait_for_delivery(event.id, "dropped")["attempts"] == []
    (created,) = stripe_sandbox.client.v1.events.list(params={"type": "refund.created"}).data
    assert created.data.object.id == refund["id"]


@pytest.mark.parametrize(
    ("intent", "body", "status"),
    [("pi_unknown", {}, 404), (None, {"amount": 0}, 422), (None, {"amount": "ten"}, 422), (None, {"x": 1}, 422)],
)
def test_dashboard_refund_refuses_bad_requests(
    stripe_sandbox: StripeSandbox, intent: str | None, body: dict[str, object], status: int
) -> None:
    target = intent or str(paid_session(stripe_sandbox).payment_intent)

    response = stripe_sandbox.http.post(
        f"{stripe_sandbox.base_url}/_control/payment_intents/{target}/refund", json=body
    )

    assert response.status_code == status
    assert stripe_sandbox.client.v1.refunds.list().data == []
