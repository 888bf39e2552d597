"""Stripe through the official library: Checkout Sessions, expiry, refunds and webhook verification."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import stripe

from payments.audit import ProviderLogger
from payments.domain import to_minor_units
from payments.settings import PaymentsSettings


class ProviderUnavailable(Exception):
    """The provider could not be reached or refused in a way the client can only retry later."""


class LoggedHTTPClient(stripe.HTTPClient):
    """The library's transport, over httpx with timeouts, filing every raw exchange in the provider log."""

    name = "shop-httpx"

    def __init__(self, logger: ProviderLogger, timeout: float) -> None:
        super().__init__()
        self._logger = logger
        self._client = httpx.Client(timeout=timeout)

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Any, post_data: Any = None
    ) -> tuple[bytes, int, Any]:
        headers = dict(headers or {})
        body = post_data.encode() if isinstance(post_data, str) else post_data
        operation = f"{method.upper()} {urlsplit(url).path}"
        try:
            response = self._client.request(method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            self._log(operation, url, headers, post_data, {"error": repr(exc)}, None)
            raise stripe.APIConnectionError(f"Stripe could not be reached: {exc!r}", should_retry=True) from exc
        self._log(operation, url, headers, post_data, response.text, response.status_code)
        return response.content, response.status_code, response.headers

    def _log(
        self, operation: str, url: str, headers: dict[str, str], body: Any, response: Any, status: int | None
    ) -> None:
        self._logger.record(
            direction="outbound",
            provider="stripe",
            operation=operation,
            url=url,
            request={"headers": headers, "body": body},
            response=response,
            status=status,
        )

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None


class StripeGateway:
    def __init__(self, settings: PaymentsSettings, logger: ProviderLogger) -> None:
        self.settings = settings
        self.logger = logger
        base = settings.stripe_base
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": base} if base else None,
            http_client=LoggedHTTPClient(logger, settings.stripe_timeout),
            max_network_retries=2,
        )

    def create_checkout_session(
        self,
        *,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        amount: Decimal,
        currency: str,
        lines: list[dict[str, Any]],
    ) -> CheckoutSession:
        metadata = {"order_id": str(order_id), "payment_id": str(payment_id)}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": _line_items(amount, currency, lines),
            "success_url": self._return_url(payment_id, "success"),
            "cancel_url": self._return_url(payment_id, "cancel"),
            "metadata": metadata,
            "client_reference_id": str(order_id),
            "expires_at": int(time.time()) + self.settings.stripe_session_ttl,
            "payment_intent_data": {"metadata": metadata},
        }
        try:
            session = self.client.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"payment-{payment_id}"},
            )
        except stripe.StripeError as exc:
            raise ProviderUnavailable(f"Stripe refused the checkout session: {exc.user_message}") from exc
        return CheckoutSession(id=session.id, url=session.url)

    def expire_session(self, session_id: str) -> None:
        """Expire an open session; one that is no longer open (paid, expired) is left as it is: if it
        was paid, its webhook arrives and the success rules decide."""
        try:
            self.client.v1.checkout.sessions.expire(session_id)
        except stripe.InvalidRequestError:
            pass

    def refund(self, *, payment_intent: str, amount: Decimal, refund_id: uuid.UUID, reason: str) -> str:
        refund = self.client.v1.refunds.create(
            params={
                "payment_intent": payment_intent,
                "amount": to_minor_units(amount),
                "metadata": {"refund_id": str(refund_id), "reason": reason[:450]},
            },
            options={"idempotency_key": f"refund-{refund_id}"},
        )
        return str(refund.id)

    def verify_webhook(self, raw_body: bytes, signature: str | None) -> dict[str, Any]:
        """The event as a plain dict, after the signature over the raw bytes checks out.

        Raises stripe.SignatureVerificationError (bad, missing or stale) or ValueError (not JSON)."""
        stripe.Webhook.construct_event(raw_body, signature, self.settings.stripe_webhook_secret)
        event: dict[str, Any] = json.loads(raw_body)
        return event

    def _return_url(self, payment_id: uuid.UUID, status: str) -> str:
        base = self.settings.frontend_url or self.settings.public_url
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}{urlencode({'payment_id': str(payment_id), 'status': status})}"


def _line_items(amount: Decimal, currency: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
