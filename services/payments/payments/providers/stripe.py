"""Stripe through the official library: Checkout Sessions, their expiry, refunds, and webhooks (verified
on the raw bytes, then read into verdicts)."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

import stripe
import urllib3

from payments.audit import ProviderLog
from payments.domain import from_minor_units, to_minor_units
from payments.providers.base import (
    Checkout,
    OpenedPayment,
    Outcome,
    ProviderRefused,
    ProviderUnavailable,
    ProviderVerdict,
    RefundCall,
    RefundResult,
    WebhookRejected,
)
from payments.settings import PaymentsSettings

NAME = "stripe"
SIGNATURE_TOLERANCE = 300
LOOKUP_EXPAND = "payment_intent.latest_charge"
EVENTS_PAGE = 100
# A bound on one reading (10,000 events); what is left is read from the advanced cursor next time.
MAX_EVENT_PAGES = 100
PAID_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
# Stripe's errors that a retry can cure; the others are refusals.
TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
POOL_SIZE = 16


class LoggedHTTPClient(stripe.HTTPClient):
    """The library's transport: one pool of kept-alive connections with timeouts for the process,
    filing every raw exchange in the provider log. No retries here: the library retries, with its
    idempotency keys."""

    name = "shop-urllib3"

    def __init__(self, audit: ProviderLog, timeout: float) -> None:
        super().__init__()
        self._audit = audit
        # One connection per thread that calls at once (request threads and the provider-call lanes);
        # past that a connection is opened for the call and not kept.
        self._pool = urllib3.PoolManager(maxsize=POOL_SIZE, timeout=urllib3.Timeout(total=timeout), retries=False)

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Any, post_data: Any = None
    ) -> tuple[bytes, int, Any]:
        headers = dict(headers or {})
        body = post_data.encode() if isinstance(post_data, str) else post_data
        operation = f"{method.upper()} {urlsplit(url).path}"
        try:
            response = self._pool.request(method.upper(), url, headers=headers, body=body)
        except urllib3.exceptions.HTTPError as exc:
            self._audit.outbound(NAME, operation, url, headers, post_data, {"error": repr(exc)}, None)
            raise stripe.APIConnectionError(f"Stripe could not be reached: {exc!r}", should_retry=True) from exc
        content = response.data
        self._audit.outbound(
            NAME, operation, url, headers, post_data, content.decode("utf-8", "replace"), response.status
        )
        return content, response.status, response.headers

    def close(self) -> None:
        self._pool.clear()


class StripeProvider:
    name = NAME
    max_refunds: int | None = None
    # The customer pays on Stripe's page and the session completes there, with or without the shop.
    completes_on_its_own = True

    def __init__(self, settings: PaymentsSettings, audit: ProviderLog) -> None:
        self.settings = settings
        # The library logs two INFO lines per call, each formatted and written by our JSON handler:
        # real work on the checkout path for nothing the provider log does not already hold.
        logging.getLogger("stripe").setLevel(logging.WARNING)
        base = settings.stripe_base
        self._http = LoggedHTTPClient(audit, settings.stripe_timeout)
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": base} if base else None,
            http_client=self._http,
            max_network_retries=2,
        )

    def refuses_currency(self, currency: str) -> str | None:
        return None

    def known_secrets(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        self._http.close()

    # Payments

    def open(self, checkout: Checkout) -> OpenedPayment:
        metadata = {"order_id": str(checkout.order_id), "payment_id": str(checkout.payment_id)}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": line_items(checkout.amount, checkout.currency, checkout.lines),
            "success_url": self._return_url(checkout, "success"),
            "cancel_url": self._return_url(checkout, "cancel"),
            "metadata": metadata,
            "client_reference_id": str(checkout.order_id),
            "expires_at": int(time.time()) + self.settings.stripe_session_ttl,
            "payment_intent_data": {"metadata": metadata},
        }
        try:
            session = self._call(
                "post", "/v1/checkout/sessions", idempotency_key=f"payment-{checkout.payment_id}", **params
            )
        except TRANSIENT as exc:
            raise ProviderUnavailable(f"Stripe: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            raise ProviderRefused(f"Stripe refused the checkout session: {exc.user_message or exc}") from exc
        if not session.get("id") or not session.get("url"):
            raise ProviderRefused("Stripe answered a checkout session without an id or url")
        return OpenedPayment(reference=str(session["id"]), redirect_url=str(session["url"]))

    def _call(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        """A call through the library's requestor (auth, retries, idempotency keys, errors), its answer
        as the parsed JSON: the library's StripeObject tree is a third of its own cost per call, and the
        shop reads a handful of fields."""
        answer: dict[str, Any] = self.client.raw_request(method, path, **params).data
        return answer

    def cancel(self, reference: str) -> None:
        try:
            self._call("post", f"/v1/checkout/sessions/{reference}/expire")
        except stripe.InvalidRequestError:
            # Only an open session expires. One paid meanwhile tells the shop by its webhook, and the
            # success rules refund it (the payment is closed here).
            pass
        except TRANSIENT as exc:
            raise ProviderUnavailable(f"Stripe: {exc}") from exc

    def lookup(self, reference: str) -> ProviderVerdict:
        """The session with its PaymentIntent and that intent's charge, in one call: paid or not, and
        how much of it went back (a refund made in the dashboard)."""
        try:
            session = self._call("get", f"/v1/checkout/sessions/{reference}", expand=[LOOKUP_EXPAND])
        except TRANSIENT as exc:
            raise ProviderUnavailable(f"Stripe: {exc}") from exc
        except stripe.StripeError as exc:
            return ProviderVerdict(NAME, Outcome.UNKNOWN, reference=reference, detail=f"lookup refused: {exc}")
        return verdict_of_session(session, "looked up")

    def events_since(self, created_from: int, types: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every event of these types created at or after `created_from` (Unix seconds), oldest first:
        Stripe lists newest first, so all pages are read before any is applied."""
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"created": {"gte": created_from}, "types": list(types), "limit": EVENTS_PAGE}
        try:
            for _ in range(MAX_EVENT_PAGES):
                page = self._call("get", "/v1/events", **params)
                data = [event for event in page.get("data") or [] if isinstance(event, dict)]
                events.extend(data)
                if not page.get("has_more") or not data:
                    break
                params["starting_after"] = data[-1]["id"]
        except TRANSIENT as exc:
            raise ProviderUnavailable(f"Stripe: {exc}") from exc
        except stripe.StripeError as exc:
            raise ProviderUnavailable(f"Stripe refused the events list: {exc}") from exc
        events.reverse()
        return events

    def refund(self, call: RefundCall) -> RefundResult:
        try:
            refund = self._call(
                "post",
                "/v1/refunds",
                payment_intent=call.transaction_id,
                amount=to_minor_units(call.amount),
                metadata={"refund_id": str(call.refund_id), "reason": call.reason[:450]},
                # The same key on every attempt: a retry after a lost answer gets the first refund back.
                idempotency_key=f"refund-{call.refund_id}",
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "charge_already_refunded":
                return RefundResult(None, already_refunded=True)
            raise ProviderRefused(f"Stripe refused the refund: {exc.user_message or exc}") from exc
        except TRANSIENT as exc:
            raise ProviderUnavailable(f"Stripe: {exc}") from exc
        except stripe.StripeError as exc:
            raise ProviderRefused(f"Stripe refused the refund: {exc.user_message or exc}") from exc
        return RefundResult(str(refund.get("id") or "") or None)

    # Webhooks

    def verify_webhook(self, raw_body: bytes, signature: str | None) -> dict[str, Any]:
        secret = self.settings.stripe_webhook_signing_secret
        if secret is None:
            raise WebhookRejected("no webhook signing secret is configured (STRIPE_WEBHOOK_SECRET)")
        try:
            stripe.WebhookSignature.verify_header(raw_body, signature, secret, SIGNATURE_TOLERANCE)
            event = json.loads(raw_body)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise WebhookRejected("the Stripe-Signature does not verify against this body") from exc
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("type"):
            raise WebhookRejected("not a Stripe event")
        return event

    def verdict_of_event(self, event: dict[str, Any]) -> ProviderVerdict | None:
        event_type = str(event.get("type"))
        obj = (event.get("data") or {}).get("object") or {}
        if not isinstance(obj, dict):
            return None
        if event_type == "charge.refunded":
            return verdict_of_charge(obj)
        if event_type in PAID_EVENTS:
            return verdict_of_session(obj, event_type)
        if event_type == "checkout.session.async_payment_failed":
            return _session_verdict(obj, Outcome.FAILED, "the payment failed at Stripe")
        if event_type == "checkout.session.expired":
            return _session_verdict(obj, Outcome.CANCELLED, "the checkout session expired")
        return None

    def _return_url(self, checkout: Checkout, status: str) -> str:
        base = self.settings.frontend_url or self.settings.public_url
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}{urlencode({'payment_id': str(checkout.payment_id), 'status': status})}"


def _session_verdict(session: dict[str, Any], outcome: Outcome, detail: str) -> ProviderVerdict:
    intent = session.get("payment_intent")
    # Expanded (a lookup), the intent carries its charge, and the charge what was refunded of it.
    charge = intent.get("latest_charge") if isinstance(intent, dict) else None
    refunded = charge.get("amount_refunded") if isinstance(charge, dict) else None
    return ProviderVerdict(
        NAME,
        outcome,
        reference=str(session.get("id") or "") or None,
        transaction_id=(intent.get("id") if isinstance(intent, dict) else intent) or None,
        amount=from_minor_units(int(session.get("amount_total") or 0)),
        currency=str(session.get("currency") or "").upper() or None,
        refunded_total=from_minor_units(int(refunded)) if refunded is not None else None,
        detail=detail,
    )


def verdict_of_session(session: dict[str, Any], source: str) -> ProviderVerdict:
    if session.get("payment_status") == "paid":
        return _session_verdict(session, Outcome.PAID, f"{source}: paid")
    if session.get("status") == "expired":
        return _session_verdict(session, Outcome.CANCELLED, f"{source}: the checkout session expired")
    return _session_verdict(session, Outcome.PENDING, f"{source}: not paid yet ({session.get('payment_status')})")


def verdict_of_charge(charge: dict[str, Any]) -> ProviderVerdict | None:
    intent = charge.get("payment_intent")
    if not intent:
        return None
    return ProviderVerdict(
        NAME,
        Outcome.REFUNDED,
        transaction_id=str(intent.get("id") if isinstance(intent, dict) else intent),
        currency=str(charge.get("currency") or "").upper() or None,
        refunded_total=from_minor_units(int(charge.get("amount_refunded") or 0)),
        detail="charge refunded at Stripe",
    )


def line_items(amount: Decimal, currency: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = [
        {
            "price_data": {
                "currency": currency.lower(),
                "unit_amount": to_minor_units(Decimal(str(line["unit_price"]))),
                "product_data": {"name": str(line.get("name") or line.get("sku") or "item")},
            },
            "quantity": int(line["quantity"]),
        }
        for line in lines
    ]
    total = sum(item["price_data"]["unit_amount"] * item["quantity"] for item in items)  # type: ignore[index]
    if not items or total != to_minor_units(amount):
        # The amount charged must be the order's, whatever the lines add up to.
        return [
            {
                "price_data": {
                    "currency": currency.lower(),
                    "unit_amount": to_minor_units(amount),
                    "product_data": {"name": "Shop order"},
                },
                "quantity": 1,
            }
        ]
    return items
