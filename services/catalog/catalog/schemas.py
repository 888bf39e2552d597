"""Request and response models of the public catalog API. The internal lookup's shapes are
contracts.internal, shared with the services that call it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from catalog.domain import IMAGE_URL, MAX_IMAGES, MAX_STOCK, checked_image_url
from contracts.events import Money
from shopkit.fields import JSON_INTEGER, NONBLANK, QUERY_TEXT, NonNegativeAmount, PositiveAmount, omit_default

Price = PositiveAmount
PriceBound = NonNegativeAmount
Sku = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NONBLANK)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
ImageUrl = Annotated[str, StringConstraints(max_length=2048, pattern=IMAGE_URL), AfterValidator(checked_image_url)]
Images = Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)]
Sort = Literal["price", "-price", "name", "-created_at"]
# SQLite hands timestamps back without their zone; they were written as UTC.
UtcDatetime = Annotated[datetime, AfterValidator(lambda v: v if v.tzinfo else v.replace(tzinfo=UTC))]


class ProductCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"sku": "KETTLE-1", "name": "Kettle", "description": "steel, 1.7 l", "price": "1250.00", "stock": 10}
            ]
        },
    )

    sku: Sku
    name: Name
    description: Description = ""
    price: Price
    # JSON's types, as the schema says: false is not 0, nor 0 false.
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK), JSON_INTEGER] = 0
    currency: Currency = "BDT"
    category: Category | None = None
    images: Images = Field(default_factory=list)


# The default of a field that may be absent but not null (typed Any: mypy sees the field's own type).
ABSENT: Any = None


class ProductUpdate(BaseModel):
    """Absent means "leave as is"; only `category` may be null ("no category" is a value), every other
    column must have one, so null is refused by the field's type (and the schema says so)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(ABSENT, json_schema_extra=omit_default)
    description: Description = Field(ABSENT, json_schema_extra=omit_default)
    price: Price = Field(ABSENT, json_schema_extra=omit_default)
    is_active: bool = Field(ABSENT, strict=True, json_schema_extra=omit_default)
    category: Category | None = None
    images: Images = Field(ABSENT, json_schema_extra=omit_default)


class StockAdjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not zero: the schema's `not` states what _not_zero checks.
    delta: Annotated[int, Field(ge=-MAX_STOCK, le=MAX_STOCK, json_schema_extra={"not": {"const": 0}}), JSON_INTEGER]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=NONBLANK)]

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

    q: Annotated[str | None, StringConstraints(strip_whitespace=True, max_length=200, pattern=QUERY_TEXT)] = None
    min_price: PriceBound | None = None
    max_price: PriceBound | None = None
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
