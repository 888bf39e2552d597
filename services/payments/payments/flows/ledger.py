"""The refund ledger: a row exists before a provider is asked, so no path refunds twice; a row turns
succeeded once, and that is when PaymentRefunded is emitted and the payment's refunded amount grows."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import PaymentRefunded
from payments.context import Lane, wake_after_commit
from payments.domain import (
    ZERO,
    PaymentStatus,
    RefundStatus,
    RefundTotals,
    default_restock,
    money,
    totals_of,
)
from payments.flows.locks import lock_payment, payment_with_transaction
from payments.models import PayableOrder, Payment, Refund
from payments.providers.base import ProviderVerdict
from shopkit.uow import UnitOfWork

# The refund of a success the shop cannot keep (a late or second success): one per payment.
AUTOMATIC_REFUND_KEY = "automatic"
# A refund of a transaction the shop has not recorded yet: its success may still be on its way (the
# events came out of order), so the caller tries again later.
NO_PAYMENT_FOR_TRANSACTION = "ignored: no payment for this transaction"


def totals(session: Session, payment: Payment) -> RefundTotals:
    rows = session.execute(select(Refund.status, Refund.amount).where(Refund.payment_id == payment.id))
    return totals_of(payment.amount, ((row.status, row.amount) for row in rows))


def refund_with_key(session: Session, payment_id: uuid.UUID, key: str) -> Refund | None:
    return session.scalar(select(Refund).where(Refund.payment_id == payment_id, Refund.idempotency_key == key))


def open_refund(uow: UnitOfWork, payment: Payment, amount: Decimal, reason: str, *, restock: bool, key: str) -> Refund:
    """Write a pending row (the provider is asked once this commits) and move the payment along."""
    before = totals(uow.session, payment)
    refund = Refund(
        id=uuid.uuid4(),
        payment_id=payment.id,
        idempotency_key=key[:255],
        amount=money(amount),
        currency=payment.currency,
        reason=reason[:1000],
        restock=restock,
        status=RefundStatus.PENDING,
        attempts=0,
    )
    uow.session.add(refund)
    after = RefundTotals(before.amount, before.refunded, before.pending + refund.amount, before.count + 1)
    payment.status = after.status()
    wake_after_commit(uow, Lane.PROVIDER)
    return refund


def restock_default(session: Session, payment: Payment, amount: Decimal, rest: Decimal) -> bool:
    """Stock goes back when the refund gives back all that is left of an order not yet shipped; a
    partial refund (a goodwill gesture, one returned item) restocks only when asked."""
    if money(amount) < money(rest):
        return False
    order = session.get(PayableOrder, payment.order_id)
    return default_restock(order.fulfilment if order else None)


def finish_refund(uow: UnitOfWork, payment: Payment, refund: Refund, provider_refund_id: str | None) -> None:
    """The provider gave the money back: record it once and tell the other services."""
    refund.status = RefundStatus.SUCCEEDED
    refund.provider_refund_id = provider_refund_id
    refund.claimed_until = None
    after = totals(uow.session, payment)
    payment.refunded_amount = after.refunded
    payment.status = after.status()
    uow.emit(
        PaymentRefunded(
            payment_id=payment.id,
            order_id=payment.order_id,
            provider=payment.provider,  # type: ignore[arg-type]
            amount=refund.amount,
            currency=payment.currency,
            reason=refund.reason,
            refunded_amount=after.refunded,
            fully_refunded=after.refunded >= after.amount,
            restock=refund.restock,
        ),
        correlation_id=payment.order_id,
    )


def fail_refund(uow: UnitOfWork, payment: Payment, refund: Refund, error: str) -> None:
    refund.status = RefundStatus.FAILED
    refund.last_error = error[:2000]
    refund.claimed_until = None
    if refund.idempotency_key == AUTOMATIC_REFUND_KEY:
        # Money the shop must not keep: the payment stays refund_pending, for an operator to settle.
        payment.status = PaymentStatus.REFUND_PENDING
    else:
        payment.status = totals(uow.session, payment).status()


def record_provider_refunds(uow: UnitOfWork, verdict: ProviderVerdict) -> str:
    """The provider's total refunded for a captured payment: what exceeds the refunds the shop asked
    for was made outside the shop (the dashboard) and is recorded now, once per total seen."""
    if not verdict.transaction_id or verdict.refunded_total is None:
        return "ignored: no transaction or total"
    session = uow.session
    payment_id = payment_with_transaction(session, verdict.provider, verdict.transaction_id)
    if payment_id is None:
        return NO_PAYMENT_FOR_TRANSACTION
    _, payment = lock_payment(session, payment_id)
    assert payment is not None
    known = totals(session, payment)
    outside = money(verdict.refunded_total) - known.refunded - known.pending
    if outside <= ZERO:
        return "refunds already recorded"
    key = f"provider-total-{money(verdict.refunded_total)}"
    if refund_with_key(session, payment.id, key) is not None:
        return "refunds already recorded"
    reason = f"refunded at {verdict.provider}"
    refund = Refund(
        id=uuid.uuid4(),
        payment_id=payment.id,
        idempotency_key=key,
        amount=outside,
        currency=payment.currency,
        reason=reason,
        restock=restock_default(session, payment, outside, known.rest),
        status=RefundStatus.PENDING,
        attempts=0,
    )
    session.add(refund)
    finish_refund(uow, payment, refund, None)
    return f"{outside:.2f} {reason}"
