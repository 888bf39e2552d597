"""Tables of the payments schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopkit.db import GUID


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite (the all-in-one mode) hands timestamps back without their zone; they were written as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class PayableOrder(Base):
    """What an order owes, as OrderPlaced told us; the only orders a payment can be made for."""

    __tablename__ = "payable_orders"

    order_id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False, index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    # Learnt from OrderShipped / OrderDelivered: None until shipped. Decides the default of `restock`.
    fulfilment: Mapped[str | None] = mapped_column(String(20))
    # The trace OrderPlaced came in (W3C traceparent): the order's payments continue it, so the
    # provider's webhook, which arrives with no trace of its own, joins the checkout's trace.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_payments_user_idempotency_key"),
        Index("ix_payments_provider_reference", "provider", "provider_reference"),
        Index("ix_payments_status", "status", "updated_at"),
        Index("ix_payments_created_at", "created_at"),
        Index("ix_payments_provider_transaction", "provider", "provider_transaction_id"),
        Index("ix_payments_provider_cancel_due_at", "provider_cancel_due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False)
    provider: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    provider_transaction_id: Mapped[str | None] = mapped_column(String(255))
    redirect_url: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Sum of the refunds the provider confirmed.
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, default=Decimal("0.00"))
    # Set when the payment was closed here but is still open at the provider (a Checkout Session to
    # expire): the provider is asked after the commit, from then on, until it has answered.
    provider_cancel_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The order's trace (else the starting request's): what the provider says later is applied in it.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    # When reconciliation last claimed this payment to look it up: a replica skips it until the
    # next interval, and a pass that died mid-way leaves it to the next one.
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )


class Refund(Base):
    """The refund ledger: a row exists before the provider is asked, so no path refunds twice."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("payment_id", "idempotency_key", name="uq_refunds_payment_key"),
        Index("ix_refunds_status", "status", "claimed_until"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    payment_id: Mapped[uuid.UUID] = mapped_column(GUID(), nullable=False, index=True)
    # Who asked, once: the RefundRequested event's id, the admin's Idempotency-Key, the provider's
    # own total for a refund made outside the shop. A redelivered request finds its row.
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    # Whether the order's committed stock goes back once this refund is done (PaymentRefunded.restock).
    restock: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # A lease, not a lock: the provider is called outside any transaction, and a worker that dies
    # mid-call lets another retry (with the same provider idempotency key) once the lease runs out.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )


class WebhookEvent(Base):
    """Every verified provider event as received; processed_at marks it handled (once)."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "provider_event_id", name="uq_webhook_events_provider_id"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(10), nullable=False)
    provider_event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    outcome: Mapped[str | None] = mapped_column(Text)
    # An event whose application failed is tried again from then (the others go on meanwhile).
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProviderLog(Base):
    """The audit trail of every exchange with a provider, secrets redacted before it is written."""

    __tablename__ = "provider_log"

    id: Mapped[uuid.UUID] = mapped_column(GUID(), primary_key=True, default=uuid.uuid4)
    direction: Mapped[str] = mapped_column(String(10), nullable=False)  # outbound | inbound
    provider: Mapped[str] = mapped_column(String(10), nullable=False)
    operation: Mapped[str] = mapped_column(String(100), nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    request: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)


class ReconcileCursor(Base):
    """How far reconciliation has read a provider's event list: the `created` (seconds) of the newest
    event applied. A lease (not a lock: the provider is read outside any transaction) lets one replica
    read at a time and another take over from the same position if it dies."""

    __tablename__ = "reconcile_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_event_id: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )
