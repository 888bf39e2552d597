"""Finding and locking payments. Every path that changes a payment locks the order's row first, then
the payment's: no two transactions can wait on each other, and the order's row serialises everything
that happens to one order (two successes, a cancellation racing a webhook)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments.models import PayableOrder, Payment


def lock_payment(session: Session, payment_id: uuid.UUID) -> tuple[PayableOrder | None, Payment | None]:
    order_id = session.scalar(select(Payment.order_id).where(Payment.id == payment_id))
    if order_id is None:
        return None, None
    order = session.get(PayableOrder, order_id, with_for_update=True)
    return order, session.get(Payment, payment_id, with_for_update=True, populate_existing=True)


def payment_with_reference(session: Session, provider: str, reference: str) -> uuid.UUID | None:
    """The payment the shop created this provider object (Checkout Session, paymentID) for."""
    return session.scalar(
        select(Payment.id).where(Payment.provider == provider, Payment.provider_reference == reference)
    )


def payment_with_transaction(session: Session, provider: str, transaction_id: str) -> uuid.UUID | None:
    return session.scalar(
        select(Payment.id).where(Payment.provider == provider, Payment.provider_transaction_id == transaction_id)
    )
