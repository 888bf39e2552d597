"""Request and response models of the public catalog API. The internal lookup's shapes are
contracts.internal, shared with the services that call it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from catalog.domain import MAX_IMAGES, MAX_STOCK, checked_image_url
from contracts.events import Money

Price = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
Sku = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
ImageUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(checked_image_url)]
Images = Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)]
Sort = Literal["price", "-price", "name", "-created_at"]
# SQLite hands timestamps back without their zone; they were written as UTC.
UtcDatetime = Annotated[datetime, AfterValidator(lambda v: v if v.tzinfo else v.replace(tzinfo=UTC))]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Name
    description: Description = ""
    price: Price
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK)] = 0
    currency: Currency = "BDT"
    category: Category | None = None
    images: Images = Field(default_factory=list)


# Fields a PATCH may set to null: "no category" is a value; every other column must have one.
NULLABLE_UPDATES = frozenset({"category"})


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    price: Price | None = None
    is_active: bool | None = None
    category: Category | None = None
    images: Images | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ProductUpdate:
        # Absent means "leave as is"; an explicit null would blank a column that must have a value.
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None and name not in NULLABLE_UPDATES]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        return self


class StockAdjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delta: Annotated[int, Field(ge=-MAX_STOCK, le=MAX_STOCK)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _not_zero(self) -> StockAdjustment:
        if self.delta == 0:
            raise ValueError("delta must not be zero")
        return self


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sku: str
    name: str
    description: str
    price: Money
    currency: str
    stock: int
    is_active: bool
    category: str | None
    images: list[str]
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    page: int
    page_size: int


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slug: str
    product_count: int


class StockMovementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    delta: int
    cause: str
    order_id: uuid.UUID | None
    reason: str | None
    stock_after: int
    created_at: UtcDatetime


class StockMovementPage(BaseModel):
    items: list[StockMovementOut]
    total: int
    page: int
    page_size: int


class ProductFilters(BaseModel):
    """The listing's query: validated like a body so that bad values are 422 problems.
    `include_archived` is for admins (the operators' audit reads every product); anyone else asking
    for it is refused rather than silently shown less than they asked for."""

    q: Annotated[str | None, StringConstraints(strip_whitespace=True, max_length=200)] = None
    min_price: Annotated[Decimal | None, Field(ge=0, max_digits=12, decimal_places=2)] = None
    max_price: Annotated[Decimal | None, Field(ge=0, max_digits=12, decimal_places=2)] = None
    in_stock: bool | None = None
    category: Category | None = None
    include_archived: bool = False
    sort: Sort = "-created_at"
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 20

    @model_validator(mode="after")
    def _price_range(self) -> ProductFilters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price is above max_price")
        return self
