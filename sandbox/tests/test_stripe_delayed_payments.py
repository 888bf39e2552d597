"""A payment method that settles later: the session completes unpaid, then succeeds or fails."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sandbox.tests.conftest import StripeSandbox, WebhookReceiver
from sandbox.tests.test_stripe_sandbox import session_params


def pay_later(sandbox: StripeSandbox) -> stripe.checkout.Session:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    page = sandbox.http.post(f"{session.url}/pay", data={"outcome": "delayed"})
    assert page.status_code == 200
    assert "data-status='processing'" in page.text
    return sandbox.client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})


def settle(sandbox: StripeSandbox, session_id: str, outcome: str) -> httpx.Response:
    return sandbox.http.post(
        f"{sandbox.base_url}/_control/checkout/sessions/{session_id}/async-payment", json={"outcome": outcome}
    )


def test_delayed_payment_completes_the_session_unpaid(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    session = pay_later(stripe_sandbox)

    assert (session.status, session.payment_status) == ("complete", "unpaid")
    assert isinstance(session.payment_intent, stripe.PaymentIntent)
    assert session.payment_intent.status == "processing"
    (completed,) = webhook_receiver.wait_for("checkout.session.completed")
    assert completed.data.object.payment_status == "unpaid"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_sandbox.client.v1.refunds.create(params={"payment_intent": session.payment_intent.id})


def test_a_delayed_payment_that_succeeds(stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver) -> None:
    session = pay_later(stripe_sandbox)

    assert settle(stripe_sandbox, session.id, "succeeded").json()["payment_status"] == "paid"

    (event,) = webhook_receiver.wait_for("checkout.session.async_payment_succeeded")
    assert event.data.object.id == session.id
    assert event.data.object.payment_status == "paid"
    assert isinstance(session.payment_intent, stripe.PaymentIntent)
    assert stripe_sandbox.client.v1.payment_intents.retrieve(session.payment_intent.id).status == "succeeded"
    assert settle(stripe_sandbox, session.id, "failed").status_code == 409  # settled once


def test_a_delayed_payment_that_fails(stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver) -> None:
    session = pay_later(stripe_sandbox)

    assert settle(stripe_sandbox, session.id, "failed").status_code == 200

    (event,) = webhook_receiver.wait_for("checkout.session.async_payment_failed")
    assert event.data.object.payment_status == "unpaid"
    again = stripe_sandbox.client.v1.checkout.sessions.retrieve(session.id)
    assert (again.status, again.payment_status) == ("complete", "unpaid")
    assert isinstance(session.payment_intent, stripe.PaymentIntent)
    intent = stripe_sandbox.client.v1.payment_intents.retrieve(session.payment_intent.id)
    assert intent.status == "requires_payment_method"


def test_settling_a_card_payment_is_refused(stripe_sandbox: StripeSandbox) -> None:
    session = stripe_sandbox.client.v1.checkout.sessions.create(params=session_params())
    stripe_sandbox.http.post(f"{session.url}/pay", data={"outcome": "success"})

    assert settle(stripe_sandbox, session.id, "succeeded").status_code == 409
    assert settle(stripe_sandbox, session.id, "maybe").status_code == 422


def test_expand_unknown_property_is_400(stripe_sandbox: StripeSandbox) -> None:
    session = stripe_sandbox.client.v1.checkout.sessions.create(params=session_params())

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_sandbox.client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["customer"]})
    assert caught.value.param == "expand[0]"
