"""Request and response models of the payments API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from payments.domain import money, public_status
from payments.models import Payment


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: uuid.UUID
    provider: Literal["stripe", "bkash"]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class PaymentOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    provider: str
    status: str
    amount: str
    currency: str
    provider_reference: str | None
    provider_transaction_id: str | None
    redirect_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, payment: Payment) -> PaymentOut:
        return cls(
            id=payment.id,
            order_id=payment.order_id,
            provider=payment.provider,
            status=public_status(payment.status),
            amount=f"{money(payment.amount):.2f}",
            currency=payment.currency,
            provider_reference=payment.provider_reference,
            provider_transaction_id=payment.provider_transaction_id,
            redirect_url=payment.redirect_url,
            created_at=payment.created_at,
        )


class PaymentPage(BaseModel):
    items: list[PaymentOut]
    total: int
    page: int
    page_size: int


class CallbackOutcome(BaseModel):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    status: str
