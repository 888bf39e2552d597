"""Stripe's objects as the sandbox keeps them, each able to render its API JSON and its stored state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.ids import random_string


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + random_string(length)


@dataclass
class LineItem:
    id: str
    name: str
    currency: str
    unit_amount: int
    quantity: int
    price_id: str
    product_id: str

    @property
    def amount_total(self) -> int:
        return self.unit_amount * self.quantity

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": self.amount_total,
            "amount_tax": 0,
            "amount_total": self.amount_total,
            "currency": self.currency,
            "description": self.name,
            "price": {
                "id": self.price_id,
                "object": "price",
                "active": False,
                "currency": self.currency,
                "livemode": False,
                "product": self.product_id,
                "type": "one_time",
                "unit_amount": self.unit_amount,
                "unit_amount_decimal": str(self.unit_amount),
            },
            "quantity": self.quantity,
        }


@dataclass
class CheckoutSession:
    id: str
    created: int
    expires_at: int
    url: str
    currency: str
    line_items: list[LineItem]
    success_url: str | None
    cancel_url: str | None
    metadata: dict[str, str]
    client_reference_id: str | None
    customer_email: str | None
    locale: str | None
    payment_intent_metadata: dict[str, str]
    status: str = "open"
    payment_status: str = "unpaid"
    payment_intent: str | None = None
    customer_details: dict[str, Any] | None = None

    @property
    def amount_total(self) -> int:
        return sum(item.amount_total for item in self.line_items)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CheckoutSession:
        return cls(**{**state, "line_items": [LineItem(**item) for item in state["line_items"]]})

    def to_json(self) -> dict[str, Any]:
        amount_total = self.amount_total
        return {
            "id": self.id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": amount_total,
            "amount_total": amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "client_secret": None,
            "created": self.created,
            "currency": self.currency,
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": dict(self.customer_details) if self.customer_details else None,
            "customer_email": self.customer_email,
            "expires_at": self.expires_at,
            "invoice": None,
            "livemode": False,
            "locale": self.locale,
            "metadata": dict(self.metadata),
            "mode": "payment",
            "payment_intent": self.payment_intent,
            "payment_method_types": ["card"],
            "payment_status": self.payment_status,
            "status": self.status,
            "submit_type": None,
            "success_url": self.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            # Stripe hands out the hosted page's address only while the session can be paid.
            "url": self.url if self.status == "open" else None,
        }


@dataclass
class PaymentIntent:
    id: str
    amount: int
    currency: str
    metadata: dict[str, str]
    created: int
    latest_charge: str
    payment_method: str
    client_secret: str
    # succeeded; processing while a delayed payment method settles; requires_payment_method once it failed.
    status: str = "succeeded"

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PaymentIntent:
        return cls(**state)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount if self.status == "succeeded" else 0,
            "capture_method": "automatic_async",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": None,
            "description": None,
            "last_payment_error": None,
            "latest_charge": self.latest_charge,
            "livemode": False,
            "metadata": dict(self.metadata),
            "payment_method": self.payment_method,
            "payment_method_types": ["card"],
            "status": self.status,
        }


@dataclass
class Charge:
    id: str
    payment_intent: str
    amount: int
    currency: str
    created: int
    payment_method: str
    billing_email: str | None
    amount_refunded: int = 0
    # succeeded, pending (a delayed payment method still settling) or failed.
    status: str = "succeeded"
    # Oldest first; the API shows them newest first.
    refund_ids: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.amount - self.amount_refunded

    @property
    def refunded(self) -> bool:
        # Stripe sets `refunded` only once the whole amount went back.
        return self.amount_refunded >= self.amount

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Charge:
        return cls(**state)

    def to_json(self) -> dict[str, Any]:
        captured = self.status == "succeeded"
        return {
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount if captured else 0,
            "amount_refunded": self.amount_refunded,
            "balance_transaction": None,
            "billing_details": {"address": None, "email": self.billing_email, "name": None, "phone": None},
            "captured": captured,
            "created": self.created,
            "currency": self.currency,
            "description": None,
            "disputed": False,
            "livemode": False,
            "metadata": {},
            "outcome": {"network_status": "approved_by_network", "type": "authorized"} if captured else None,
            "paid": captured,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "refunded": self.refunded,
            "status": self.status,
        }


@dataclass
class Refund:
    id: str
    amount: int
    currency: str
    charge: str
    payment_intent: str
    reason: str | None
    metadata: dict[str, str]
    created: int

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Refund:
        return cls(**state)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": None,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "destination_details": None,
            "metadata": dict(self.metadata),
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
