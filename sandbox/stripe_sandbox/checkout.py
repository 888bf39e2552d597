"""Checkout Sessions: created by the merchant, paid or abandoned by the customer, expired by time.

Each function is one change of the account. A session past its `expires_at` is expired when it is
next looked at (as well as by the sweeper), so that is visible at once.
"""

from __future__ import annotations

import copy
import heapq
import time
from typing import Any

from sandbox.stripe_sandbox.account import Change, StripeAccount
from sandbox.stripe_sandbox.charges import intent_json
from sandbox.stripe_sandbox.checkout_params import session_request
from sandbox.stripe_sandbox.errors import StripeError, cannot_expand, resource_missing
from sandbox.stripe_sandbox.objects import Charge, CheckoutSession, PaymentIntent, new_id

SESSION_EXPANDABLE = ("payment_intent", "payment_intent.latest_charge", "line_items")


def create_session(account: StripeAccount, params: dict[str, Any], hosted_base: str) -> dict[str, Any]:
    request = session_request(params)
    session_id = new_id("cs_test_", 58)
    session = CheckoutSession(
        id=session_id,
        created=request.created,
        expires_at=request.expires_at,
        url=f"{hosted_base}/checkout/{session_id}",
        currency=request.currency,
        line_items=request.line_items,
        success_url=request.success_url,
        cancel_url=request.cancel_url,
        metadata=request.metadata,
        client_reference_id=request.client_reference_id,
        customer_email=request.customer_email,
        locale=request.locale,
        payment_intent_metadata=request.payment_intent_metadata,
    )
    with account.changing() as change:
        account.sessions[session.id] = session
        heapq.heappush(account.open_by_expiry, (session.expires_at, session.id))
        change.touch("session", session)
        return session_json(account, session, request.expand)


def retrieve_session(account: StripeAccount, session_id: str, expand: list[str]) -> dict[str, Any]:
    with account.changing() as change:
        return session_json(account, _session(account, session_id, change), expand)


def session_line_items(account: StripeAccount, session_id: str) -> dict[str, Any]:
    with account.changing() as change:
        return _line_items_json(_session(account, session_id, change))


def expire_session(account: StripeAccount, session_id: str) -> dict[str, Any]:
    with account.changing() as change:
        session = _session(account, session_id, change)
        if session.status != "open":
            raise StripeError(
                400,
                f'Only Checkout Sessions with a status in ["open"] can be expired. This session has '
                f'a status of "{session.status}".',
                saved=True,
            )
        _expire(account, session, change)
        return session.to_json()


def pay_session(
    account: StripeAccount, session_id: str, email: str | None, *, delayed: bool = False
) -> CheckoutSession:
    """The hosted page's payment: money taken at once, or (`delayed`) a method that settles later.

    A delayed payment completes the session unpaid, as bank debits do; the async-payment control
    settles it later with `checkout.session.async_payment_succeeded` or `..._failed`.
    """
    with account.changing() as change:
        session = _open_session(account, session_id, change)
        now = int(time.time())
        payment_method = new_id("pm_")
        intent_id = new_id("pi_")
        charge = Charge(
            id=new_id("ch_"),
            payment_intent=intent_id,
            amount=session.amount_total,
            currency=session.currency,
            created=now,
            payment_method=payment_method,
            billing_email=email or session.customer_email,
            status="pending" if delayed else "succeeded",
        )
        intent = PaymentIntent(
            id=intent_id,
            amount=charge.amount,
            currency=charge.currency,
            metadata=dict(session.payment_intent_metadata),
            created=now,
            latest_charge=charge.id,
            payment_method=payment_method,
            client_secret=f"{intent_id}_secret_{new_id('', 25)}",
            status="processing" if delayed else "succeeded",
        )
        account.charges[charge.id] = charge
        account.payment_intents[intent.id] = intent
        session.status = "complete"
        session.payment_status = "unpaid" if delayed else "paid"
        session.payment_intent = intent.id
        session.customer_details = {
            "address": None,
            "email": charge.billing_email,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        for kind, obj in (("charge", charge), ("payment_intent", intent), ("session", session)):
            change.touch(kind, obj)
        account.emit(change, "checkout.session.completed", session.to_json())
        return copy.copy(session)


def settle_async_payment(account: StripeAccount, session_id: str, *, succeeded: bool) -> dict[str, Any]:
    """A delayed payment method's outcome arrives (the sandbox's stand-in for the bank)."""
    with account.changing() as change:
        session = _session(account, session_id, change)
        intent = account.payment_intents.get(session.payment_intent or "")
        if intent is None or intent.status != "processing":
            raise StripeError(409, "This Checkout Session has no delayed payment waiting to settle.")
        charge = account.charges[intent.latest_charge]
        intent.status = "succeeded" if succeeded else "requires_payment_method"
        charge.status = "succeeded" if succeeded else "failed"
        if succeeded:
            session.payment_status = "paid"
        for kind, obj in (("charge", charge), ("payment_intent", intent), ("session", session)):
            change.touch(kind, obj)
        outcome = "succeeded" if succeeded else "failed"
        account.emit(change, f"checkout.session.async_payment_{outcome}", session.to_json())
        return session.to_json()


def declinable_session(account: StripeAccount, session_id: str) -> CheckoutSession:
    """A declined card changes nothing: the session stays open and no event is sent."""
    with account.changing() as change:
        return copy.copy(_open_session(account, session_id, change))


def cancel_session(account: StripeAccount, session_id: str) -> CheckoutSession:
    """The customer gave up on the hosted page: the session expires (the shop's contract)."""
    with account.changing() as change:
        session = _open_session(account, session_id, change)
        _expire(account, session, change)
        return copy.copy(session)


def peek_session(account: StripeAccount, session_id: str) -> CheckoutSession:
    """A copy for the hosted pages, after expiring it if its time is up."""
    with account.changing() as change:
        return copy.copy(_session(account, session_id, change))


def expire_due_sessions(account: StripeAccount) -> int:
    """Expire open sessions past `expires_at`, soonest first, without scanning the others."""
    expired = 0
    now = time.time()
    with account.changing() as change:
        queue = account.open_by_expiry
        while queue and queue[0][0] <= now:
            _, session_id = heapq.heappop(queue)
            session = account.sessions.get(session_id)
            if session is not None and session.status == "open":
                _expire(account, session, change)
                expired += 1
    return expired


def _session(account: StripeAccount, session_id: str, change: Change) -> CheckoutSession:
    session = account.sessions.get(session_id)
    if session is None:
        raise resource_missing("checkout.session", session_id)
    if session.status == "open" and session.expires_at <= time.time():
        _expire(account, session, change)
    return session


def _open_session(account: StripeAccount, session_id: str, change: Change) -> CheckoutSession:
    session = _session(account, session_id, change)
    if session.status != "open":
        raise StripeError(409, f"This Checkout Session is no longer open (status {session.status}).")
    return session


def _expire(account: StripeAccount, session: CheckoutSession, change: Change) -> None:
    session.status = "expired"
    change.touch("session", session)
    account.emit(change, "checkout.session.expired", session.to_json())


def session_json(account: StripeAccount, session: CheckoutSession, expand: list[str]) -> dict[str, Any]:
    cannot_expand(expand, SESSION_EXPANDABLE)
    body = session.to_json()
    if session.payment_intent and any(field.startswith("payment_intent") for field in expand):
        intent = account.payment_intents[session.payment_intent]
        nested = ["latest_charge"] if "payment_intent.latest_charge" in expand else []
        body["payment_intent"] = intent_json(account, intent, nested)
    if "line_items" in expand:
        body["line_items"] = _line_items_json(session)
    return body


def _line_items_json(session: CheckoutSession) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [item.to_json() for item in session.line_items],
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session.id}/line_items",
    }
