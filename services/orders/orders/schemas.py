"""Request and response models of the orders API."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from contracts.events import Money
from orders.countries import ISO_3166_ALPHA_2
from orders.domain import MAX_LINES, MAX_QUANTITY, OrderStatus
from shopkit.fields import JOINERS, JSON_INTEGER, case_insensitive_choice, text

# Controls and format characters but the joiners are refused by the fields' pattern (which the
# schema shows); this check stays for lone surrogates, which the database could not store.


def _printable(text: str) -> str:
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs") and char not in JOINERS:
            raise ValueError(f"control characters are not allowed (U+{ord(char):04X})")
    return text


# Stripped, non-empty, printable strings of bounded length.
Line = Annotated[str, text(200, printable=True), AfterValidator(_printable)]
City = Annotated[str, text(100, printable=True), AfterValidator(_printable)]
PostalCode = Annotated[str, text(20, printable=True), AfterValidator(_printable)]
Label = Annotated[str, text(100, printable=True), AfterValidator(_printable)]


def _country(code: str) -> str:
    code = code.upper()
    if code not in ISO_3166_ALPHA_2:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


Country = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=2, pattern=case_insensitive_choice(ISO_3166_ALPHA_2)
    ),
    AfterValidator(_country),
]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ()-]{2,30}$")]


class ShippingAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: Line
    line1: Line
    line2: Line | None = None
    city: City
    postal_code: PostalCode | None = None
    country: Country
    phone: Phone | None = None


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY), JSON_INTEGER]


class PlaceOrderIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [{"product_id": "3f2c1f8e-5b7a-4c1e-9d2a-6f0b8e4a1c2d", "quantity": 2}],
                    "shipping_address": {
                        "full_name": "Rina",
                        "line1": "House 12, Road 5",
                        "city": "Dhaka",
                        "country": "BD",
                    },
                }
            ]
        },
    )

    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_LINES)
    # None: the customer picks the order up.
    shipping_address: ShippingAddress | None = None


class ShipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    carrier: Label
    tracking_number: Label


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


class ShipmentOut(BaseModel):
    carrier: str
    tracking_number: str
    shipped_at: datetime
    delivered_at: datetime | None


class OrderOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    currency: str
    total_amount: Money
    refunded_amount: Money
    items: list[OrderItemOut]
    shipping_address: ShippingAddress | None
    shipment: ShipmentOut | None
    timeline: list[TimelineEntry]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    page: int
    page_size: int
