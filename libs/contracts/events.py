"""The checkout saga's events. Money travels as decimal strings, never floats."""

from __future__ import annotations

import uuid
from datetime import datetime
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
    """Orders asks payments to give money back. v2: `amount` (None: whatever is left of the payment)
    and `restock` (release the stock committed for the order once the money is back)."""

    TYPE = "RefundRequested"
    VERSION = 2
    order_id: uuid.UUID
    payment_id: uuid.UUID | None = None
    reason: str
    amount: Money | None = None
    restock: bool = True


class PaymentRefunded(EventData):
    """Money went back to the customer. v2 adds partial refunds: `amount` is this refund,
    `refunded_amount` all refunded of the payment so far, `fully_refunded` whether nothing is left;
    `restock` says whether the order's committed stock goes back on the shelf. A v1 event (no such
    fields) was always a full refund that restocked, which is what the defaults say."""

    TYPE = "PaymentRefunded"
    VERSION = 2
    payment_id: uuid.UUID
    order_id: uuid.UUID
    provider: Provider
    amount: Money
    currency: Currency
    reason: str
    refunded_amount: Money | None = None
    fully_refunded: bool = True
    restock: bool = True


class StockCommitRequested(EventData):
    """Orders re-drives a paid order whose stock answer never came: commit (or answer again with the
    decision already taken). The catalog treats it as it treats the PaymentSucceeded it stands for."""

    TYPE = "StockCommitRequested"
    order_id: uuid.UUID
    payment_id: uuid.UUID
    items: list[OrderLine]


class OrderShipped(EventData):
    TYPE = "OrderShipped"
    order_id: uuid.UUID
    user_id: uuid.UUID
    carrier: str
    tracking_number: str
    shipped_at: datetime


class OrderDelivered(EventData):
    TYPE = "OrderDelivered"
    order_id: uuid.UUID
    user_id: uuid.UUID
    delivered_at: datetime


class ProductChanged(EventData):
    """The catalog's current facts about one product, sent on every create, edit, archive and stock
    movement. `version` grows with every change of the product: apply an event only when it is newer
    than what you hold. The stock is advisory for readers; the catalog's commit decides."""

    TYPE = "ProductChanged"
    product_id: uuid.UUID
    sku: str
    name: str
    price: Money
    currency: Currency
    is_active: bool
    stock: int = Field(ge=0)
    version: int = Field(ge=1)
    category: str | None = None
    images: list[str] = Field(default_factory=list)


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
        StockCommitRequested,
        OrderShipped,
        OrderDelivered,
        ProductChanged,
    )
}
