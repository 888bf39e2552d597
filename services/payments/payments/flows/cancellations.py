"""Closing at the provider what the shop closed here (the customer switched provider, the order was
cancelled): the payment is cancelled in the caller's transaction with a cancellation due, and the
provider-calls worker asks the provider after the commit. A payment that can complete at the provider
without the shop (a Stripe Checkout Session) is looked up first: if the customer paid meanwhile (and
its webhook is late, or lost), that success is applied at once, and refunded (it is closed here)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, select, update

from payments.audit import for_payment
from payments.context import Lane, PaymentsContext, wake_after_commit
from payments.domain import PaymentStatus
from payments.flows import repairs
from payments.flows.side_by_side import run_side_by_side
from payments.models import Payment, utcnow
from payments.providers.base import Outcome, PaymentProvider, ProviderUnavailable
from shopkit.uow import UnitOfWork

log = logging.getLogger("payments.cancellations")

CANCEL_LEASE = timedelta(seconds=120)
RETRY_AFTER = 30.0
DUE_BATCH = 20


def cancel_payment(uow: UnitOfWork, payment: Payment, reason: str) -> None:
    """Close an initiated payment here; the provider hears of it after the commit."""
    payment.status = PaymentStatus.CANCELLED
    payment.failure_reason = reason[:1000]
    if payment.provider_reference:
        cancel_at_provider(uow, payment)


def cancel_at_provider(uow: UnitOfWork, payment: Payment) -> None:
    payment.provider_cancel_due_at = utcnow()
    wake_after_commit(uow, Lane.PROVIDER)


_DUE = (
    select(Payment.id, Payment.provider, Payment.provider_reference)
    .where(Payment.provider_cancel_due_at <= bindparam("now"))
    .order_by(Payment.provider_cancel_due_at)
    .limit(DUE_BATCH)
)


def run_due_cancellations(context: PaymentsContext) -> int:
    with context.uow() as uow:
        due = list(uow.session.execute(_DUE, {"now": utcnow()}))
    return run_side_by_side(lambda row: cancel_one(context, *row), due, name="cancel")


def cancel_one(context: PaymentsContext, payment_id: uuid.UUID, provider: str, reference: str | None) -> None:
    if not _claim(context, payment_id):
        return
    with context.audit.collecting(), for_payment(payment_id):
        try:
            if reference:
                adapter = context.providers.get(provider)
                if adapter.completes_on_its_own and _paid_meanwhile(context, adapter, reference):
                    return
                adapter.cancel(reference)
        except ProviderUnavailable as exc:
            log.warning("could not close a payment at its provider; retrying", extra={"error": str(exc)})
            _due_again(context, payment_id, RETRY_AFTER)
            return
        with context.uow() as uow:
            uow.session.execute(update(Payment).where(Payment.id == payment_id).values(provider_cancel_due_at=None))
            context.commit(uow)


def _paid_meanwhile(context: PaymentsContext, provider: PaymentProvider, reference: str) -> bool:
    """Look before closing: a paid session cannot be expired, and its money must go back now rather
    than whenever (if ever) its webhook comes. The success is applied with the cancellation done."""
    verdict = provider.lookup(reference)
    if verdict.outcome is not Outcome.PAID:
        return False
    with context.uow() as uow:
        kind = repairs.apply_as_repair(uow, context, verdict, "before-expiry")
        key = repairs.payment_of(uow.session, verdict)
        uow.session.execute(update(Payment).where(Payment.id == key).values(provider_cancel_due_at=None))
        context.commit(uow)
    repairs.count(provider.name, kind)
    return True


def _claim(context: PaymentsContext, payment_id: uuid.UUID) -> bool:
    now = utcnow()
    with context.uow() as uow:
        claimed = uow.session.execute(  # type: ignore[attr-defined]
            update(Payment)
            .where(Payment.id == payment_id, Payment.provider_cancel_due_at <= now)
            .values(provider_cancel_due_at=now + CANCEL_LEASE)
        ).rowcount
        uow.commit()
    return bool(claimed)


def _due_again(context: PaymentsContext, payment_id: uuid.UUID, seconds: float) -> None:
    with context.uow() as uow:
        uow.session.execute(
            update(Payment)
            .where(Payment.id == payment_id)
            .values(provider_cancel_due_at=utcnow() + timedelta(seconds=seconds))
        )
        context.commit(uow)
