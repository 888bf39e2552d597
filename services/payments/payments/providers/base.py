"""What payments needs from a payment provider, whoever it is: the `PaymentProvider` interface, the
requests it takes and the verdicts it gives. The flows speak only this language; everything that is
Stripe or bKash lives behind it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol


class ProviderUnavailable(Exception):
    """No answer, or an answer that only says "later" (timeouts, 5xx, maintenance): retry."""


class ProviderRefused(Exception):
    """The provider said no, and asking again will not change that."""


class Outcome(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PENDING = "pending"  # still open at the provider: the customer has not finished
    REFUNDED = "refunded"  # money went back (`refunded_total` says how much in all)
    UNKNOWN = "unknown"  # no trustworthy answer: change nothing, ask again later


@dataclass(frozen=True)
class ProviderVerdict:
    """What a provider says about one payment, from a webhook, a callback's Execute/Query, a lookup
    or a cancellation. A verdict is matched to a payment by the `reference` the shop itself created
    (Checkout Session id, bKash paymentID) and, for refunds only, by its `transaction_id`."""

    provider: str
    outcome: Outcome
    reference: str | None = None
    transaction_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    refunded_total: Decimal | None = None
    detail: str = ""


@dataclass(frozen=True)
class Checkout:
    """A payment to open at the provider."""

    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount: Decimal
    currency: str
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class OpenedPayment:
    reference: str
    redirect_url: str


@dataclass(frozen=True)
class RefundCall:
    refund_id: uuid.UUID
    reference: str
    transaction_id: str
    amount: Decimal
    currency: str
    reason: str
    order_id: uuid.UUID
    # Refund ids the provider already gave for this payment, and whether this is a retry: a provider
    # without idempotency keys must check whether a lost answer's refund went through.
    known_refund_ids: frozenset[str] = frozenset()
    retry: bool = False


@dataclass(frozen=True)
class RefundResult:
    provider_refund_id: str | None
    # True when the provider says the money was already back (refunded before, by us or elsewhere).
    already_refunded: bool = False


class PaymentProvider(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def max_refunds(self) -> int | None:
        """How many refunds one payment may have at this provider (None: no limit)."""
        ...

    @property
    def completes_on_its_own(self) -> bool:
        """Whether a payment can be completed at the provider without the shop's part (Stripe's page
        takes the money; bKash waits for the shop's Execute): such a payment is looked up before it is
        closed at the provider, since it may have been paid meanwhile."""
        ...

    def refuses_currency(self, currency: str) -> str | None:
        """Why this provider cannot take payments in `currency`, or None when it can."""
        ...

    def open(self, checkout: Checkout) -> OpenedPayment:
        """Create the payment at the provider. Raises ProviderUnavailable or ProviderRefused."""
        ...

    def cancel(self, reference: str) -> None:
        """Close an open payment at the provider; one no longer open is left as it is. Raises
        ProviderUnavailable (retry)."""
        ...

    def lookup(self, reference: str) -> ProviderVerdict:
        """Ask the provider where the payment stands."""
        ...

    def refund(self, call: RefundCall) -> RefundResult:
        """Give money back. Raises ProviderUnavailable (retry) or ProviderRefused (give up)."""
        ...

    def known_secrets(self) -> tuple[str, ...]:
        """Secrets this adapter holds at the moment (tokens), for the provider log's redaction."""
        ...

    def close(self) -> None: ...


class WebhookProvider(PaymentProvider, Protocol):
    """A provider that tells the shop what happened by signed webhooks (Stripe)."""

    def verify_webhook(self, raw_body: bytes, signature: str | None) -> dict[str, Any]:
        """The event, once its signature over these exact bytes checks out. Raises WebhookRejected."""
        ...

    def verdict_of_event(self, event: dict[str, Any]) -> ProviderVerdict | None:
        """What a verified event says about a payment; None for an event the shop does not act on."""
        ...

    def events_since(self, created_from: int, types: tuple[str, ...]) -> list[dict[str, Any]]:
        """The provider's own list of events of these types from `created_from` (Unix seconds) on,
        oldest first: what its webhooks should have said. Raises ProviderUnavailable."""
        ...


class RedirectProvider(PaymentProvider, Protocol):
    """A provider whose customer returns through a callback, after which the shop completes the
    payment itself (bKash's Execute)."""

    def complete(self, reference: str) -> ProviderVerdict:
        """Take the money the customer authorised (at most once), asking again when unsure."""
        ...


class WebhookRejected(Exception):
    """Unsigned, badly signed, stale or not an event: answered 400 and logged as a digest only."""
