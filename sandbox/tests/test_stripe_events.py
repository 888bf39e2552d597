"""GET /v1/events as Stripe serves it, read with the official library the way a reconciler would."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from sandbox.tests.conftest import StripeSandbox
from sandbox.tests.test_stripe_sandbox import paid_session, session_params
from shopkit.testing import local_http

AUTH = {"Authorization": "Bearer sk_test_sandbox"}


def make_events(sandbox: StripeSandbox, refunds: int) -> tuple[str, list[str]]:
    """A paid session and `refunds` one-unit refunds: the payment intent and the event ids, oldest first.
    Returns once every one sent to the endpoint is delivered, so that two reads of an event agree on its
    `pending_webhooks` (an event of a type the endpoint does not take has no delivery)."""
    intent = str(paid_session(sandbox).payment_intent)
    for _ in range(refunds):
        sandbox.client.v1.refunds.create(params={"payment_intent": intent, "amount": 1})
    listed = local_http.get(f"{sandbox.base_url}/v1/events", params={"limit": 100}, headers=AUTH).json()
    ids = [event["id"] for event in reversed(listed["data"])]
    for event_id in ids:
        if sandbox.http.get(f"{sandbox.base_url}/_control/events/{event_id}").json()["delivery_status"] is not None:
            sandbox.wait_for_delivery(event_id, "delivered")
    return intent, ids


def events_page(sandbox: StripeSandbox, **params: Any) -> httpx.Response:
    return local_http.get(f"{sandbox.base_url}/v1/events", params=params, headers=AUTH)


def test_every_event_is_listed_newest_first_as_a_stripe_list(stripe_sandbox: StripeSandbox) -> None:
    intent, _ = make_events(stripe_sandbox, refunds=1)

    listed = stripe_sandbox.client.v1.events.list()

    assert listed.object == "list"
    assert listed.url == "/v1/events"
    assert listed.has_more is False
    assert [e.type for e in listed.data] == ["refund.created", "charge.refunded", "checkout.session.completed"]
    refunded = listed.data[1]
    assert refunded.id.startswith("evt_")
    assert refunded.data.object.object == "charge"
    assert refunded.data.object.payment_intent == intent
    assert refunded.data.previous_attributes.to_dict() == {"amount_refunded": 0, "refunded": False}
    # The same event, read by id.
    assert stripe_sandbox.client.v1.events.retrieve(refunded.id).to_dict() == refunded.to_dict()


def test_type_filters_one_type_a_wildcard_or_a_list(stripe_sandbox: StripeSandbox) -> None:
    make_events(stripe_sandbox, refunds=2)
    session = stripe_sandbox.client.v1.checkout.sessions.create(params=session_params())
    stripe_sandbox.client.v1.checkout.sessions.expire(session.id)
    events = stripe_sandbox.client.v1.events

    assert [e.type for e in events.list(params={"type": "charge.refunded"}).data] == ["charge.refunded"] * 2
    assert [e.type for e in events.list(params={"type": "checkout.session.*"}).data] == [
        "checkout.session.expired",
        "checkout.session.completed",
    ]
    both = events.list(params={"types": ["checkout.session.expired", "refund.created"]})
    assert [e.type for e in both.data] == ["checkout.session.expired", "refund.created", "refund.created"]
    assert events.list(params={"type": "payout.*"}).data == []


def test_type_and_types_together_and_too_many_types_are_400(stripe_sandbox: StripeSandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as both:
        stripe_sandbox.client.v1.events.list(params={"type": "charge.refunded", "types": ["refund.created"]})
    assert both.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as many:
        stripe_sandbox.client.v1.events.list(params={"types": [f"type.{n}" for n in range(21)]})
    assert many.value.param == "types"


def test_created_bounds_select_by_unix_time(stripe_sandbox: StripeSandbox) -> None:
    make_events(stripe_sandbox, refunds=1)
    earlier = stripe_sandbox.client.v1.events.list().data[0].created
    # Stripe's clock has one-second steps: wait for the next second so the bounds can tell them apart.
    while int(time.time()) <= earlier:
        time.sleep(0.05)
    session = stripe_sandbox.client.v1.checkout.sessions.create(params=session_params())
    stripe_sandbox.client.v1.checkout.sessions.expire(session.id)
    events = stripe_sandbox.client.v1.events
    later = events.list().data[0].created

    assert [e.type for e in events.list(params={"created": {"gt": earlier}}).data] == ["checkout.session.expired"]
    assert [e.type for e in events.list(params={"created": {"gte": later}}).data] == ["checkout.session.expired"]
    assert [e.type for e in events.list(params={"created": later}).data] == ["checkout.session.expired"]
    older = events.list(params={"created": {"lte": earlier}}).data
    assert [e.type for e in older] == ["refund.created", "charge.refunded", "checkout.session.completed"]
    assert [e.id for e in events.list(params={"created": {"lt": later}}).data] == [e.id for e in older]
    assert events.list(params={"created": {"gt": later}}).data == []


def test_paging_with_limit_starting_after_and_ending_before(stripe_sandbox: StripeSandbox) -> None:
    _, oldest_first = make_events(stripe_sandbox, refunds=3)  # 1 + 3 * 2 = 7 events
    newest_first = list(reversed(oldest_first))

    first = events_page(stripe_sandbox, limit=3).json()
    assert [e["id"] for e in first["data"]] == newest_first[:3]
    assert first["has_more"] is True
    second = events_page(stripe_sandbox, limit=3, starting_after=newest_first[2]).json()
    assert [e["id"] for e in second["data"]] == newest_first[3:6]
    assert second["has_more"] is True
    last = events_page(stripe_sandbox, limit=3, starting_after=newest_first[5]).json()
    assert [e["id"] for e in last["data"]] == newest_first[6:]
    assert last["has_more"] is False
    back = events_page(stripe_sandbox, limit=2, ending_before=newest_first[5]).json()
    assert [e["id"] for e in back["data"]] == newest_first[3:5]
    assert back["has_more"] is True
    assert len(events_page(stripe_sandbox).json()["data"]) == 7  # the default limit is 10


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"starting_after": "evt_nope"}, "starting_after")],
)
def test_bad_paging_is_400_naming_the_param(stripe_sandbox: StripeSandbox, params: dict[str, Any], param: str) -> None:
    response = events_page(stripe_sandbox, **params)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_the_librarys_auto_paging_reads_every_event_once(stripe_sandbox: StripeSandbox) -> None:
    _, oldest_first = make_events(stripe_sandbox, refunds=12)  # 25 events
    since = stripe_sandbox.client.v1.events.list(params={"limit": 100}).data[-1].created - 1

    pages = stripe_sandbox.client.v1.events.list(params={"created": {"gt": since}, "limit": 4})
    seen = [event.id for event in pages.auto_paging_iter()]

    assert seen == list(reversed(oldest_first))


def test_reconciler_query_since_a_time_for_the_shops_types(stripe_sandbox: StripeSandbox) -> None:
    # What PROVIDERS.md shows the reconciler doing: created[gt] with types[] and limit 100.
    before = int(time.time()) - 1
    make_events(stripe_sandbox, refunds=2)

    listed = stripe_sandbox.client.v1.events.list(
        params={"created": {"gt": before}, "types": ["charge.refunded", "refund.updated"], "limit": 100}
    )
    charges = [event.data.object for event in listed.auto_paging_iter()]

    assert [(c.amount_refunded, c.refunded) for c in charges] == [(2, False), (1, False)]
    assert [len(c.refunds.data) for c in charges] == [2, 1]


def test_delivery_success_filters_by_how_the_webhook_went(stripe_sandbox: StripeSandbox) -> None:
    paid = paid_session(stripe_sandbox)
    (completed,) = stripe_sandbox.events("checkout.session.completed")
    stripe_sandbox.wait_for_delivery(completed["id"], "delivered")
    stripe_sandbox.control("/webhooks", {"mode": "drop"})
    stripe_sandbox.client.v1.refunds.create(params={"payment_intent": str(paid.payment_intent), "amount": 5})

    undelivered = stripe_sandbox.client.v1.events.list(params={"delivery_success": False})
    delivered = stripe_sandbox.client.v1.events.list(params={"delivery_success": True})

    assert [e.type for e in undelivered.data] == ["charge.refunded"]
    # refund.created is not sent to the endpoint at all (it is not subscribed), so nothing failed.
    assert [e.type for e in delivered.data] == ["refund.created", "checkout.session.completed"]


def test_pending_webhooks_counts_down_once_delivered(stripe_sandbox: StripeSandbox) -> None:
    paid_session(stripe_sandbox)
    (record,) = stripe_sandbox.events("checkout.session.completed")
    stripe_sandbox.wait_for_delivery(record["id"], "delivered")

    assert stripe_sandbox.client.v1.events.retrieve(record["id"]).pending_webhooks == 0


def test_unknown_event_is_404(stripe_sandbox: StripeSandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_sandbox.client.v1.events.retrieve("evt_nope")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
