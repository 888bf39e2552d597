"""Tables of the catalog schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from shopkit.db import GUID

MOVEMENT_CAUSES = ("initial", "adjustment", "order_commit", "release")
DECISION_OUTCOMES = ("committed", "rejected")


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        # The last line of defence against overselling: row locks keep it from ever firing.
        CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
        CheckConstraint("price > 0", name="ck_products_price_positive"),
        # Listing filters on is_active first, then sorts by one of these.
        Index("ix_products_active_price", "is_active", "price"),
        Index("ix_products_active_name", "is_active", "name"),
        Index("ix_products_active_created", "is_active", "created_at"),
        # The category filter and GET /api/categories read active products of a category.
        Index("ix_products_active_category", "is_active", "category"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    sku: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="BDT")
    stock: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Grows by one in the very statement that changes the row (never read-modify-write), so that the
    # ProductChanged events readers order by it can never share a version or carry a stale state.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default=text("1"))
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    images: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list, server_default=text("'[]'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


def search_document() -> ColumnElement[Any]:
    """The text searched by `q` on PostgreSQL. It must stay token for token the expression of the GIN
    index ix_products_search (initial migration, PostgreSQL only), or the planner cannot use the index."""
    return func.to_tsvector(
        literal_column("'simple'"),
        Product.name + literal_column("' '") + Product.sku + literal_column("' '") + Product.description,
    )


class StockMovement(Base):
    """The stock ledger: every change of a product's stock, so that its deltas sum to the stock."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint(
            "cause IN ('initial', 'adjustment', 'order_commit', 'release')", name="ck_stock_movements_cause"
        ),
        Index("ix_stock_movements_product_created", "product_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    product_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("products.id"), nullable=False)
    delta: Mapped[int] = mapped_column(Integer, nullable=False)
    cause: Mapped[str] = mapped_column(String(20), nullable=False)
    order_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), nullable=True, index=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    stock_after: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class StockDecision(Base):
    """What the catalog decided for an order's stock, once per order: a later PaymentSucceeded for the
    same order (a redelivery, the orders sweeper, a second payment) gets the same answer again."""

    __tablename__ = "stock_decisions"
    __table_args__ = (CheckConstraint("outcome IN ('committed', 'rejected')", name="ck_stock_decisions_outcome"),)

    order_id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(10), nullable=False)
    payment_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False)
    # committed: the order lines as committed (OrderLine JSON); rejected: the shortages (Shortage JSON).
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    shortages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# Core handles of the tables: the use cases read and write rows, not ORM entities (no identity map, no
# unit-of-work flush, no attribute instrumentation on paths that run per request or per event).
PRODUCTS = cast(Table, Product.__table__)
MOVEMENTS = cast(Table, StockMovement.__table__)
DECISIONS = cast(Table, StockDecision.__table__)

# A product as the API shows it, and as a ProductChanged event carries it (plus the version).
PRODUCT_COLUMNS = tuple(
    PRODUCTS.c[name]
    for name in (
        "id",
        "sku",
        "name",
        "description",
        "price",
        "currency",
        "stock",
        "is_active",
        "version",
        "category",
        "images",
        "created_at",
        "updated_at",
    )
)
