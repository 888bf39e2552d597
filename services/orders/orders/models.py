"""Tables of the orders schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orders.domain import OrderStatus
from shopkit.db import GUID

_STATUSES = ", ".join(f"'{s.value}'" for s in OrderStatus)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # Two racing requests with one Idempotency-Key: the second insert fails here and reads the first.
        UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_idempotency_key"),
        CheckConstraint(f"status IN ({_STATUSES})", name="ck_orders_status"),
        CheckConstraint("total_amount >= 0", name="ck_orders_total_amount"),
        CheckConstraint("refunded_amount >= 0", name="ck_orders_refunded_amount"),
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_created", "created_at"),
        Index("ix_orders_status_expires", "status", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    total_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(GUID())
    payment_provider: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The sweeper re-emits what a stuck order waits on at most once per stuck_after period.
    last_redriven_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Money given back of the paying payment (PaymentRefunded's running total for it).
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, server_default="0")
    # Refunds of payments that were not (yet) the paying one, as saga.SeenRefund values. Events can
    # overtake each other: a refund seen before its PaymentSucceeded must still end the order refunded.
    refunds_seen: Mapped[list[dict[str, object]] | None] = mapped_column(JSON(none_as_null=True))
    # The address snapshotted at placement (schemas.ShippingAddress); null: the customer picks it up.
    shipping_address: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
    shipment_carrier: Mapped[str | None] = mapped_column(String(100))
    shipment_tracking_number: Mapped[str | None] = mapped_column(String(100))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity BETWEEN 1 AND 1000", name="ck_order_items_quantity"),
        CheckConstraint("unit_price >= 0", name="ck_order_items_unit_price"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    # Repeated products are merged at placement, so a product appears once per order.
    product_id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    sku: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    line_total: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)


class OrderEvent(Base):
    """The order's timeline: every status change, and notes on events that changed nothing."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        GUID(), ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Product(Base):
    """Orders' own view of the catalog's products, fed by ProductChanged (and by a read-through for a
    product not heard of yet). A row only ever moves to a higher version. Its stock is advisory."""

    __tablename__ = "products"

    product_id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True)
    sku: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    stock: Mapped[int] = mapped_column(Integer, nullable=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
