"""Request and response models of the payments API. Responses are serialised once, from the model
built without validation (the values come from our own rows), and sent as ready bytes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Provider
from payments.domain import CAPTURED_STATUSES, PUBLIC_STATUSES, ZERO, money, public_status
from payments.models import Payment, as_utc
from shopkit.fields import PositiveAmount

PublicStatus = Literal[PUBLIC_STATUSES]  # type: ignore[valid-type]


class PaymentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"order_id": "8a6e0804-2bd0-4672-b79d-d97027f9071a", "provider": "stripe"}]},
    )

    order_id: uuid.UUID
    provider: Provider


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    # Without it, all that is left of the payment is refunded.
    amount: PositiveAmount | None = None
    # Without it: restock when the rest is refunded of an order not yet shipped.
    restock: bool | None = Field(None, strict=True)


class PaymentOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    provider: str
    status: str
    amount: str
    currency: str
    # What the provider took (0.00 until paid) and what went back of it.
    captured_amount: str
    refunded_amount: str
    provider_reference: str | None
    provider_transaction_id: str | None
    redirect_url: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, payment: Payment) -> PaymentOut:
        captured = payment.amount if payment.status in CAPTURED_STATUSES else ZERO
        return cls.model_construct(
            id=payment.id,
            order_id=payment.order_id,
            provider=payment.provider,
            status=public_status(payment.status),
            amount=f"{money(payment.amount):.2f}",
            currency=payment.currency,
            captured_amount=f"{money(captured):.2f}",
            refunded_amount=f"{money(payment.refunded_amount or ZERO):.2f}",
            provider_reference=payment.provider_reference,
            provider_transaction_id=payment.provider_transaction_id,
            redirect_url=payment.redirect_url,
            created_at=as_utc(payment.created_at),
            updated_at=as_utc(payment.updated_at),
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


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json().encode(), status_code=status_code, media_type="application/json")


def payment_response(payment: Payment, status_code: int = 200) -> Response:
    return json_response(PaymentOut.of(payment), status_code)


def page_response(payments: list[Payment], total: int, page: int, page_size: int) -> Response:
    body = PaymentPage.model_construct(
        items=[PaymentOut.of(p) for p in payments], total=total, page=page, page_size=page_size
    )
    return json_response(body)
