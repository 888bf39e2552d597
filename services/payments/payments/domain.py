"""Rules of payments with no I/O: states, money in minor units, what a provider's answer means."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

PROVIDERS = ("stripe", "bkash")


class PaymentStatus(StrEnum):
    INITIATED = "initiated"
    # Internal: a bKash Execute is in flight. Shown to clients as `initiated`.
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


OPEN_STATUSES = (PaymentStatus.INITIATED, PaymentStatus.EXECUTING)
# A provider's verified success is believed from these states: a payment we cancelled locally (the
# customer switched provider, the order timed out) may still have been paid at the provider.
SUCCESS_FROM = (
    PaymentStatus.INITIATED,
    PaymentStatus.EXECUTING,
    PaymentStatus.CANCELLED,
    PaymentStatus.FAILED,
)


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FULL_REFUND_KEY = "full"


def public_status(status: str) -> str:
    return PaymentStatus.INITIATED.value if status == PaymentStatus.EXECUTING else status


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
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    return text
