"""Rules of payments with no I/O: states, money in minor units, what a verified success means for an
order, how refunds add up, what a bKash answer means, redaction of the provider log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

ZERO = Decimal("0.00")


class PaymentStatus(StrEnum):
    INITIATED = "initiated"
    # Internal: a bKash Execute is in flight. Shown to clients as `initiated`.
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUND_PENDING = "refund_pending"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


OPEN_STATUSES = (PaymentStatus.INITIATED, PaymentStatus.EXECUTING)
# Money was taken at the provider (and may have been given back, in part or in full).
CAPTURED_STATUSES = (
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.REFUND_PENDING,
    PaymentStatus.REFUNDED,
)
# Closed without money: a success the provider reports later is refunded, never believed as paid.
CLOSED_STATUSES = (PaymentStatus.FAILED, PaymentStatus.CANCELLED)
PUBLIC_STATUSES = tuple(s.value for s in PaymentStatus if s is not PaymentStatus.EXECUTING)


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"


class Fulfilment(StrEnum):
    SHIPPED = "shipped"
    DELIVERED = "delivered"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def public_status(status: str) -> str:
    return PaymentStatus.INITIATED.value if status == PaymentStatus.EXECUTING else status


def statuses_shown_as(public: str) -> tuple[str, ...]:
    """The stored statuses a client's status filter means."""
    return OPEN_STATUSES if public == PaymentStatus.INITIATED else (public,)


# Money


def money(value: Decimal | str | int) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def to_minor_units(amount: Decimal) -> int:
    """BDT and USD have two decimals: 1250.00 is 125000."""
    return int((money(amount) * 100).to_integral_value())


def from_minor_units(amount: int) -> Decimal:
    return money(Decimal(amount) / 100)


def bkash_amount(amount: Decimal) -> str:
    return f"{money(amount):.2f}"


def same_money(expected: Decimal, currency: str, got_amount: Decimal | None, got_currency: str | None) -> bool:
    if got_amount is None or got_currency is None:
        return False
    return money(expected) == money(got_amount) and currency.upper() == got_currency.upper()


# A verified success


@dataclass(frozen=True)
class SuccessDecision:
    """What to do with a verified success: emit PaymentSucceeded, or refund it at once (and why)."""

    refund_reason: str | None

    @property
    def emit_succeeded(self) -> bool:
        return self.refund_reason is None


def decide_on_success(order_status: str | None, other_succeeded_payment: bool) -> SuccessDecision:
    if order_status == OrderStatus.CANCELLED:
        return SuccessDecision("order was cancelled before the payment succeeded")
    if other_succeeded_payment or order_status == OrderStatus.PAID:
        return SuccessDecision("order was already paid by another payment")
    return SuccessDecision(None)


def decide_on_late_success(status: str) -> SuccessDecision:
    """A success for a payment the shop already closed (the customer switched provider, the order
    timed out, the provider said it failed): the money goes back, the payment never turns paid."""
    return SuccessDecision(f"the payment was already {status} when the provider reported it paid")


# Refunds


class RefundRefused(Exception):
    """A refund that cannot be asked for; `conflict` when the payment's state (not the amount) is why."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


@dataclass(frozen=True)
class RefundTotals:
    """A payment's amount against its refunds: done (`refunded`) and asked for but not done (`pending`)."""

    amount: Decimal
    refunded: Decimal
    pending: Decimal
    count: int

    @property
    def rest(self) -> Decimal:
        """What may still be asked for."""
        return max(ZERO, money(self.amount - self.refunded - self.pending))

    def status(self) -> PaymentStatus:
        if self.refunded >= self.amount:
            return PaymentStatus.REFUNDED
        if self.refunded + self.pending >= self.amount:
            return PaymentStatus.REFUND_PENDING
        if self.refunded > ZERO:
            return PaymentStatus.PARTIALLY_REFUNDED
        return PaymentStatus.SUCCEEDED


def totals_of(amount: Decimal, refunds: Iterable[tuple[str, Decimal]]) -> RefundTotals:
    """`refunds`: (status, amount) of every ledger row of one payment."""
    refunded = pending = ZERO
    count = 0
    for status, value in refunds:
        if status == RefundStatus.SUCCEEDED:
            refunded += money(value)
        elif status == RefundStatus.PENDING:
            pending += money(value)
        if status != RefundStatus.FAILED:
            count += 1
    return RefundTotals(money(amount), money(refunded), money(pending), count)


def refund_amount(totals: RefundTotals, requested: Decimal | None, *, max_refunds: int | None) -> Decimal | None:
    """How much to refund now: the requested amount, or the rest when none is given. None: nothing is
    left to refund (asking for "the rest" again is a no-op). Raises RefundRefused."""
    if requested is not None and money(requested) <= ZERO:
        raise RefundRefused("a refund amount must be positive")
    rest = totals.rest
    if requested is None and rest == ZERO:
        return None
    if requested is not None and money(requested) > rest:
        raise RefundRefused(f"only {rest:.2f} of this payment is left to refund")
    if max_refunds is not None and totals.count >= max_refunds:
        raise RefundRefused(f"this provider allows at most {max_refunds} refunds of one payment", conflict=True)
    return rest if requested is None else money(requested)


def default_restock(fulfilment: str | None) -> bool:
    """Stock goes back on the shelf for an order not yet shipped; after shipping only when asked
    (a return), since the goods are with the customer."""
    return fulfilment not in (Fulfilment.SHIPPED, Fulfilment.DELIVERED)


# bKash: outcome of Execute / Query


class BkashOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PENDING = "pending"  # still Initiated at bKash: the customer has not finished
    UNCLEAR = "unclear"  # no trustworthy answer: ask again (Query)


SUCCESS_CODE = "0000"
# Execute answers that settle the payment as failed: money will not be taken on this paymentID.
BKASH_FINAL_FAILURES = frozenset({"2006", "2007", "2010", "2011", "2014", "2023", "2069"})
# Refund answers that mean the money is back already (a previous attempt's answer was lost).
BKASH_ALREADY_REFUNDED = "2034"
# Refund answers that will not change on a retry.
BKASH_REFUND_REFUSALS = frozenset({"2002", "2006", "2026", "2033", "2074"})


def bkash_error(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(code, message) of a bKash answer in either of its shapes; code None means success."""
    code = body.get("statusCode", body.get("errorCode"))
    message = body.get("statusMessage", body.get("errorMessage"))
    if code is None and body.get("transactionStatus"):
        return None, None
    if code is None:
        return "unknown", str(message or "no status in the answer")
    code = str(code)
    return (None, None) if code == SUCCESS_CODE else (code, str(message or ""))


def classify_execute(body: dict[str, Any]) -> BkashOutcome:
    code, _ = bkash_error(body)
    if code is None:
        return BkashOutcome.COMPLETED if body.get("transactionStatus") == "Completed" else BkashOutcome.UNCLEAR
    if code in BKASH_FINAL_FAILURES:
        return BkashOutcome.CANCELLED if code == "2069" else BkashOutcome.FAILED
    return BkashOutcome.UNCLEAR


def classify_query(body: dict[str, Any]) -> BkashOutcome:
    code, _ = bkash_error(body)
    if code is not None:
        return BkashOutcome.UNCLEAR
    return {
        "Completed": BkashOutcome.COMPLETED,
        "Failed": BkashOutcome.FAILED,
        "Cancelled": BkashOutcome.CANCELLED,
        "Expired": BkashOutcome.CANCELLED,
        "Initiated": BkashOutcome.PENDING,
    }.get(str(body.get("transactionStatus")), BkashOutcome.UNCLEAR)


# Redaction of the provider log

SECRET_KEYS = frozenset(
    {
        "authorization",
        "id_token",
        "refresh_token",
        "app_secret",
        "app_key",
        "x-app-key",
        "password",
        "username",
        "stripe-signature",
        "api_key",
        "secret",
        "client_secret",
    }
)
REDACTED = "[REDACTED]"


def redact(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A copy with every secret-named field masked and every known secret value blanked out."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in SECRET_KEYS else redact(v, secrets)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        return scrub(value, secrets)
    return value


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    return text
