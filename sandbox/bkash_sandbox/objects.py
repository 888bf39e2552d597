"""bKash's tokens, payments and refunds as the sandbox keeps them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sandbox.ids import UPPER_ALPHANUMERIC, random_string

_DHAKA = timezone(timedelta(hours=6))


def random_code(length: int) -> str:
    return random_string(length, UPPER_ALPHANUMERIC)


def bkash_time(timestamp: float) -> str:
    """bKash's timestamp format: `2024-05-01T18:04:05:123 GMT+0600` (Dhaka time, milliseconds)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC).astimezone(_DHAKA)
    return f"{moment:%Y-%m-%dT%H:%M:%S}:{moment.microsecond // 1000:03d} GMT+0600"


class TransactionStatus(StrEnum):
    INITIATED = "Initiated"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    EXPIRED = "Expired"


class CustomerStep(StrEnum):
    """Where the customer is on the hosted pages; AUTHORIZED means the PIN was right."""

    WALLET = "wallet"
    OTP = "otp"
    PIN = "pin"
    AUTHORIZED = "authorized"
    ENDED = "ended"


@dataclass
class Token:
    id_token: str
    refresh_token: str
    app_key: str
    expires_at: float
    refresh_expires_at: float

    def to_state(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RefundRecord:
    refund_trx_id: str
    amount: Decimal
    amount_text: str
    sku: str
    reason: str
    completed_at: float

    def to_state(self) -> dict[str, Any]:
        return {**asdict(self), "amount": str(self.amount)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RefundRecord:
        return cls(**{**state, "amount": Decimal(state["amount"])})

    def to_json(self) -> dict[str, Any]:
        return {
            "refundTrxID": self.refund_trx_id,
            "amount": self.amount_text,
            "sku": self.sku,
            "reason": self.reason,
            "completedTime": bkash_time(self.completed_at),
        }


@dataclass
class Payment:
    payment_id: str
    app_key: str
    amount: Decimal
    # The amount as the merchant sent it: bKash echoes amounts back as strings in that form.
    amount_text: str
    currency: str
    intent: str
    mode: str
    payer_reference: str
    merchant_invoice_number: str
    callback_url: str
    created_at: float
    status: TransactionStatus = TransactionStatus.INITIATED
    step: CustomerStep = CustomerStep.WALLET
    wallet: str | None = None
    trx_id: str | None = None
    executed_at: float | None = None
    # Why the payment failed (the code bKash gave), for Execute to repeat and for the controls.
    failure_code: str | None = None
    execute_calls: int = 0
    execute_successes: int = 0
    refunds: list[RefundRecord] = field(default_factory=list)

    @property
    def refunded(self) -> Decimal:
        return sum((refund.amount for refund in self.refunds), Decimal("0"))

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        state["amount"] = str(self.amount)
        state["refunds"] = [refund.to_state() for refund in self.refunds]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Payment:
        return cls(
            **{
                **state,
                "amount": Decimal(state["amount"]),
                "status": TransactionStatus(state["status"]),
                "step": CustomerStep(state["step"]),
                "refunds": [RefundRecord.from_state(refund) for refund in state["refunds"]],
            }
        )

    def control_json(self) -> dict[str, Any]:
        """Everything the sandbox knows about the payment, for tests."""
        return {
            "paymentID": self.payment_id,
            "transactionStatus": self.status.value,
            "customerStep": self.step.value,
            "wallet": self.wallet,
            "amount": self.amount_text,
            "currency": self.currency,
            "intent": self.intent,
            "mode": self.mode,
            "payerReference": self.payer_reference,
            "merchantInvoiceNumber": self.merchant_invoice_number,
            "callbackURL": self.callback_url,
            "paymentCreateTime": bkash_time(self.created_at),
            "trxID": self.trx_id,
            "paymentExecuteTime": bkash_time(self.executed_at) if self.executed_at else None,
            "failureCode": self.failure_code,
            "executeCalls": self.execute_calls,
            "executeSuccesses": self.execute_successes,
            "refundedAmount": str(self.refunded),
            "refunds": [refund.to_json() for refund in self.refunds],
        }
