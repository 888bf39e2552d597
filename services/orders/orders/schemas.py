"""Request and response models of the orders API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Money
from orders.domain import MAX_LINES, MAX_QUANTITY, OrderStatus


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True)


class PlaceOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_LINES)


class OrderItemOut(BaseModel):
    product_id: uuid.UUID
    sku: str
    name: str
    unit_price: Money
    quantity: int
    line_total: Money


class TimelineEntry(BaseModel):
    status: OrderStatus
    at: datetime
    reason: str


class OrderOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    currency: str
    total_amount: Money
    items: list[OrderItemOut]
    timeline: list[TimelineEntry]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    page: int
    page_size: int


class CatalogProductIn(BaseModel):
    """One product of the catalog's internal lookup answer."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str
    stock: int
    is_active: bool


class CatalogLookupIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[CatalogProductIn]
