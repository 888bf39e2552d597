"""Webhook delivery: the fault modes, Stripe's retry schedule, the concurrency cap, the signing secret."""

from __future__ import annotations

import itertools
import time

import pytest

from sandbox.stripe_sandbox import StripeSandboxSettings
from sandbox.tests.conftest import WEBHOOK_SECRET, StripeSandbox, WebhookReceiver, stripe_served, stripe_settings
from sandbox.tests.test_stripe_sandbox import paid_session, session_params


def refund_in_parts(sandbox: StripeSandbox, parts: int) -> list[str]:
    """`parts` one-unit dashboard refunds of a new payment: the ids of their charge.refunded, oldest first."""
    intent = str(paid_session(sandbox).payment_intent)
    for _ in range(parts):
        response = sandbox.http.post(f"{sandbox.base_url}/_control/payment_intents/{intent}/refund", json={"amount": 1})
        assert response.status_code == 200
    listed = sandbox.client.v1.events.list(params={"type": "charge.refunded", "limit": 100})
    return [event.id for event in reversed(listed.data)]


def test_mode_control_answers_the_mode_and_refuses_unknown_ones(stripe_sandbox: StripeSandbox) -> None:
    assert stripe_sandbox.http.get(f"{stripe_sandbox.base_url}/_control/webhooks").json() == {"mode": "deliver"}
    assert stripe_sandbox.control("/webhooks", {"mode": "duplicate"}) == {"mode": "duplicate"}

    wrong = stripe_sandbox.http.post(f"{stripe_sandbox.base_url}/_control/webhooks", json={"mode": "lose"})

    assert wrong.status_code == 422
    stripe_sandbox.http.post(f"{stripe_sandbox.base_url}/_control/reset")
    assert stripe_sandbox.http.get(f"{stripe_sandbox.base_url}/_control/webhooks").json() == {"mode": "deliver"}


def test_drop_records_events_but_never_sends_them(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    stripe_sandbox.control("/webhooks", {"mode": "drop"})
    dropped = paid_session(stripe_sandbox)
    stripe_sandbox.control("/webhooks", {"mode": "deliver"})
    delivered = paid_session(stripe_sandbox)

    (arrived,) = webhook_receiver.wait_for("checkout.session.completed")
    assert arrived.data.object.id == delivered.id
    listed = stripe_sandbox.client.v1.events.list(params={"type": "checkout.session.completed"})
    assert [e.data.object.id for e in listed.data] == [delivered.id, dropped.id]
    record = stripe_sandbox.wait_for_delivery(listed.data[1].id, "dropped")
    assert record["attempts"] == []
    assert webhook_receiver.deliveries == 1
    # A dropped event can still be sent by hand, like "Resend" in the dashboard.
    resent = stripe_sandbox.http.post(f"{stripe_sandbox.base_url}/_control/events/{listed.data[1].id}/redeliver")
    assert resent.json()["delivery_status"] == "delivered"
    assert {e.data.object.id for e in webhook_receiver.wait_for("checkout.session.completed", count=2)} == {
        delivered.id,
        dropped.id,
    }


def test_duplicate_sends_each_event_twice(stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver) -> None:
    stripe_sandbox.control("/webhooks", {"mode": "duplicate"})
    session = paid_session(stripe_sandbox)

    first, second = webhook_receiver.wait_for("checkout.session.completed", count=2)

    assert first.id == second.id
    assert first.data.object.id == session.id
    record = stripe_sandbox.wait_for_delivery(first.id, "delivered")
    assert [a["status_code"] for a in record["attempts"]] == [200, 200]
    assert webhook_receiver.rejected == 0


def test_duplicate_still_retries_a_copy_that_failed(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    stripe_sandbox.control("/webhooks", {"mode": "duplicate"})
    webhook_receiver.fail_next = 1
    paid_session(stripe_sandbox)

    first, second = webhook_receiver.wait_for("checkout.session.completed", count=2)

    record = stripe_sandbox.wait_for_delivery(first.id, "delivered")
    assert [a["status_code"] for a in record["attempts"]] == [500, 200, 200]
    assert first.id == second.id


def test_reverse_holds_deliveries_and_sends_them_newest_first(
    stripe_sandbox: StripeSandbox, webhook_receiver: WebhookReceiver
) -> None:
    paid_session(stripe_sandbox)
    webhook_receiver.wait_for("checkout.session.completed")
    stripe_sandbox.control("/webhooks", {"mode": "reverse"})
    held_since = time.monotonic()

    oldest_first = refund_in_parts(stripe_sandbox, parts=4)

    # Held: the second payment's checkout.session.completed, then its four charge.refunded.
    *refunds, completed = webhook_receiver.wait_for_count(6)[1:]
    assert time.monotonic() - held_since >= 1.0  # held for a second (a lower bound only)
    assert [event.id for event in refunds] == list(reversed(oldest_first))
    assert [event.data.object.amount_refunded for event in refunds] == [4, 3, 2, 1]
    assert completed.type == "checkout.session.completed"


def test_retry_schedule_defaults_to_stripes_back_off_over_days() -> None:
    delays = StripeSandboxSettings().webhook_retry_delays

    assert delays[0] >= 60
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert 2 * 86400 <= sum(delays) <= 4 * 86400


def test_retry_schedule_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_SANDBOX_STRIPE_WEBHOOK_RETRY_DELAYS", "[1, 2, 3]")

    assert StripeSandboxSettings().webhook_retry_delays == [1, 2, 3]


def test_a_delivery_that_times_out_waits_for_the_next_retry(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.delay = 1.5
    settings = stripe_settings(webhook_receiver.url, webhook_timeout=0.3, webhook_retry_delays=[0.6, 0.6])
    with stripe_served(settings) as sandbox:
        paid_session(sandbox)
        (record,) = sandbox.events("checkout.session.completed")
        failed = sandbox.wait_for_delivery(record["id"], "failed", timeout=15)

    attempts = failed["attempts"]
    assert len(attempts) == 3
    assert all(a["status_code"] is None and "Timeout" in a["error"] for a in attempts)
    # Each retry came no sooner than its delay after the attempt before it ended.
    assert all(later["at"] - earlier["at"] >= 0.6 for earlier, later in itertools.pairwise(attempts))


def test_concurrent_deliveries_are_capped(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.delay = 0.3
    settings = stripe_settings(webhook_receiver.url, webhook_max_concurrent=2)
    with stripe_served(settings) as sandbox:
        made = refund_in_parts(sandbox, parts=8)
        arrived = webhook_receiver.wait_for("charge.refunded", count=8, timeout=30)
        webhook_receiver.wait_for("checkout.session.completed")

    assert {event.id for event in arrived} == set(made)
    assert webhook_receiver.max_in_flight == 2
    assert webhook_receiver.deliveries == 9  # waiting for a slot is not a failed attempt


def test_signs_with_its_own_secret_setting_never_the_shops(
    monkeypatch: pytest.MonkeyPatch, webhook_receiver: WebhookReceiver
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_a_real_endpoints_secret")
    monkeypatch.setenv("SHOP_SANDBOX_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("SHOP_SANDBOX_STRIPE_WEBHOOK_URL", webhook_receiver.url)
    monkeypatch.setenv("SHOP_SANDBOX_STRIPE_WEBHOOK_RETRY_DELAYS", "[0.1]")
    with stripe_served(StripeSandboxSettings()) as sandbox:
        session = paid_session(sandbox)
        (event,) = webhook_receiver.wait_for("checkout.session.completed")

    assert event.data.object.id == session.id
    assert webhook_receiver.rejected == 0


def test_the_default_secret_is_the_fixed_development_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_a_real_endpoints_secret")
    monkeypatch.delenv("SHOP_SANDBOX_STRIPE_WEBHOOK_SECRET", raising=False)

    assert StripeSandboxSettings().webhook_secret == "whsec_shop_sandbox_dev_secret"


def test_only_subscribed_types_are_sent(webhook_receiver: WebhookReceiver) -> None:
    settings = stripe_settings(webhook_receiver.url, webhook_events=["checkout.session.expired"])
    with stripe_served(settings) as sandbox:
        paid_session(sandbox)
        session = sandbox.client.v1.checkout.sessions.create(params=session_params())
        sandbox.client.v1.checkout.sessions.expire(session.id)
        (expired,) = webhook_receiver.wait_for("checkout.session.expired")
        deliveries = sandbox.events()
        listed = sandbox.client.v1.events.list()

    assert expired.data.object.id == session.id
    assert [d["type"] for d in deliveries] == ["checkout.session.expired"]
    assert [e.type for e in listed.data] == ["checkout.session.expired", "checkout.session.completed"]
    assert webhook_receiver.deliveries == 1
