"""Finding and locking payments. Every path that changes a payment locks the order's row first, then
the payment's: no two transactions can wait on each other, and the order's row serialises everything
that happens to one order (two successes, a cancellation racing a webhook)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, NamedTuple, cast

from sqlalchemy import Row, Table, bindparam, select
from sqlalchemy.orm import Session

from payments.models import PayableOrder, Payment


class PaymentKey(NamedTuple):
    id: uuid.UUID
    order_id: uuid.UUID


# Built once (these run on every checkout): only their parameters change between calls. A statement
# built per call (as Session.get does) is hashed again for the compiled cache every time.
_ORDER_OF = select(Payment.order_id).where(Payment.id == bindparam("payment_id"))
_LOCK_ORDER = select(PayableOrder).where(PayableOrder.order_id == bindparam("order_id")).with_for_update()
_PAYABLE = cast(Table, PayableOrder.__table__)
# The same lock, answered as a Core row: for a path that only reads the order (starting a payment).
_LOCK_ORDER_ROW = (
    select(
        _PAYABLE.c.order_id,
        _PAYABLE.c.user_id,
        _PAYABLE.c.amount,
        _PAYABLE.c.currency,
        _PAYABLE.c.lines,
        _PAYABLE.c.status,
        _PAYABLE.c.traceparent,
    )
    .where(_PAYABLE.c.order_id == bindparam("order_id"))
    .with_for_update()
)
_LOCK_PAYMENT = (
    select(Payment)
    .where(Payment.id == bindparam("payment_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_WITH_REFERENCE = select(Payment.id, Payment.order_id).where(
    Payment.provider == bindparam("provider"), Payment.provider_reference == bindparam("reference")
)
_WITH_REFERENCES = select(Payment.id, Payment.order_id, Payment.provider_reference).where(
    Payment.provider == bindparam("provider"),
    Payment.provider_reference.in_(bindparam("references", expanding=True)),
)
_LOCK_ORDERS = (
    select(PayableOrder)
    .where(PayableOrder.order_id.in_(bindparam("order_ids", expanding=True)))
    .order_by(PayableOrder.order_id)
    .with_for_update()
)
_LOCK_PAYMENTS = (
    select(Payment)
    .where(Payment.id.in_(bindparam("payment_ids", expanding=True)))
    .order_by(Payment.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)

# (provider, provider reference) -> the payment and its order, locked.
Locked = dict[tuple[str, str], tuple[PayableOrder | None, Payment]]


def lock_payment(
    session: Session, payment_id: uuid.UUID, order_id: uuid.UUID | None = None
) -> tuple[PayableOrder | None, Payment | None]:
    if order_id is None:
        order_id = session.scalar(_ORDER_OF, {"payment_id": payment_id})
        if order_id is None:
            return None, None
    return lock_order(session, order_id), session.scalars(_LOCK_PAYMENT, {"payment_id": payment_id}).one_or_none()


def lock_order(session: Session, order_id: uuid.UUID) -> PayableOrder | None:
    return session.scalars(_LOCK_ORDER, {"order_id": order_id}).one_or_none()


def lock_order_row(session: Session, order_id: uuid.UUID) -> Row[*tuple[Any, ...]] | None:
    """lock_order without the ORM object: the order's row, locked, for a path that does not change it."""
    return session.connection().execute(_LOCK_ORDER_ROW, {"order_id": order_id}).first()


def lock_payments_with_references(session: Session, provider: str, references: Collection[str]) -> Locked:
    """Several payments by their provider references, locked as lock_payment locks one: their orders
    first (in the order of their ids, as every batch locks them), then the payments. Three reads for a
    batch of verdicts instead of three for each."""
    if not references:
        return {}
    keys = session.execute(_WITH_REFERENCES, {"provider": provider, "references": sorted(references)}).all()
    if not keys:
        return {}
    orders = {
        order.order_id: order
        for order in session.scalars(_LOCK_ORDERS, {"order_ids": sorted({key.order_id for key in keys})})
    }
    payments = {
        payment.id: payment for payment in session.scalars(_LOCK_PAYMENTS, {"payment_ids": [key.id for key in keys]})
    }
    return {
        (provider, key.provider_reference): (orders.get(key.order_id), payments[key.id])
        for key in keys
        if key.id in payments
    }


def payment_with_reference(session: Session, provider: str, reference: str) -> PaymentKey | None:
    """The payment the shop created this provider object (Checkout Session, paymentID) for."""
    row = session.execute(_WITH_REFERENCE, {"provider": provider, "reference": reference}).first()
    return PaymentKey(row.id, row.order_id) if row else None


def payment_with_transaction(session: Session, provider: str, transaction_id: str) -> uuid.UUID | None:
    return session.scalar(
        select(Payment.id).where(Payment.provider == provider, Payment.provider_transaction_id == transaction_id)
    )
