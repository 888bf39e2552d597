"""The checkout saga's events. Money travels as decimal strings, never floats."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from contracts.envelope import EventData

Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Provider = Literal["stripe", "bkash"]


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    product_id: uuid.UUID
    sku: str
    name: str
    unit_price: Money
    quantity: int = Field(ge=1)


class Shortage(BaseModel):
    model_config = ConfigDict(frozen=True)

    product_id: uuid.UUID
    requested: int
    available: int


class OrderPlaced(EventData):
    TYPE = "OrderPlaced"
    order_id: uuid.UUID
    user_id: uuid.UUID
    currency: Currency
    total_amount: Money
    items: list[OrderLine]
    expires_at: str | None = None


class OrderCancelled(EventData):
    TYPE = "OrderCancelled"
    order_id: uuid.UUID
    user_id: uuid.UUID
    reason: str


class OrderConfirmed(EventData):
    TYPE = "OrderConfirmed"
    order_id: uuid.UUID
    user_id: uuid.UUID
    total_amount: Money
    currency: Currency


class PaymentSucceeded(EventData):
    TYPE = "PaymentSucceeded"
    payment_id: uuid.UUID
    order_id: uuid.UUID
    provider: Provider
    amount: Money
    currency: Currency
    items: list[OrderLine]


class PaymentFailed(EventData):
    TYPE = "PaymentFailed"
    payment_id: uuid.UUID
    order_id: uuid.UUID
    provider: Provider
    reason: str


class StockCommitted(EventData):
    TYPE = "StockCommitted"
    order_id: uuid.UUID
    payment_id: uuid.UUID | None = None
    items: list[OrderLine]


class StockRejected(EventData):
    TYPE = "StockRejected"
    order_id: uuid.UUID
    payment_id: uuid.UUID | None = None
    shortages: list[Shortage]


class RefundRequested(EventData):
    TYPE = "RefundRequested"
    order_id: uuid.UUID
    payment_id: uuid.UUID | None = None
    reason: str


class PaymentRefunded(EventData):
    TYPE = "PaymentRefunded"
    payment_id: uuid.UUID
    order_id: uuid.UUID
    provider: Provider
    amount: Money
    currency: Currency
    reason: str


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.TYPE: cls
    for cls in (
        OrderPlaced,
        OrderCancelled,
        OrderConfirmed,
        PaymentSucceeded,
        PaymentFailed,
        StockCommitted,
        StockRejected,
        RefundRequested,
        PaymentRefunded,
    )
}
