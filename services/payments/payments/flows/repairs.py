"""Applying what a provider says when the shop asked it (reconciliation, a lookup before closing a
payment) rather than being told: through `apply_verdict`, like a webhook or a callback, and when it
changed something, that is a repair: named by what changed, written to the provider log in the same
commit, and counted in `shop_reconciled_total{provider,kind}`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments.context import PaymentsContext
from payments.domain import CLOSED_STATUSES, OPEN_STATUSES, PaymentStatus
from payments.flows.locks import payment_with_reference, payment_with_transaction
from payments.flows.outcomes import apply_verdict
from payments.models import Payment
from payments.providers.base import Outcome, ProviderVerdict
from shopkit.metrics import RECONCILED
from shopkit.uow import UnitOfWork


@dataclass(frozen=True)
class PaymentState:
    status: str
    refunded: Decimal


def repair_kind(before: PaymentState | None, after: PaymentState | None) -> str | None:
    """What a change of a payment was, for the metric's `kind`; None when nothing changed."""
    if before is None or after is None or before == after:
        return None
    if after.refunded > before.refunded:
        return "refund" if after.status == PaymentStatus.REFUNDED else "partial_refund"
    if before.status in (*OPEN_STATUSES, *CLOSED_STATUSES) and after.status == PaymentStatus.SUCCEEDED:
        return "paid"
    if before.status in (*OPEN_STATUSES, *CLOSED_STATUSES) and after.status == PaymentStatus.REFUND_PENDING:
        # Paid at the provider, but for an order that can no longer take it: the money goes back.
        return "paid_refunding"
    if after.status in CLOSED_STATUSES:
        return str(after.status)
    return None


def payment_of(session: Session, verdict: ProviderVerdict) -> uuid.UUID | None:
    """The payment a verdict is about, as apply_verdict will find it."""
    if verdict.outcome is Outcome.REFUNDED:
        if not verdict.transaction_id:
            return None
        return payment_with_transaction(session, verdict.provider, verdict.transaction_id)
    key = payment_with_reference(session, verdict.provider, verdict.reference) if verdict.reference else None
    return key.id if key else None


def state_of(session: Session, payment_id: uuid.UUID | None) -> PaymentState | None:
    if payment_id is None:
        return None
    row = session.execute(select(Payment.status, Payment.refunded_amount).where(Payment.id == payment_id)).first()
    return PaymentState(row.status, Decimal(row.refunded_amount)) if row else None


def apply_as_repair(uow: UnitOfWork, context: PaymentsContext, verdict: ProviderVerdict, source: str) -> str | None:
    """Apply in the caller's unit of work (which commits through `context.commit`, with the log entry);
    returns the repair's kind, or None when the shop already knew. Count it with `count` once the
    commit went through."""
    payment_id = payment_of(uow.session, verdict)
    before = state_of(uow.session, payment_id)
    outcome = apply_verdict(uow, verdict)
    kind = repair_kind(before, state_of(uow.session, payment_id))
    if kind is not None and before is not None:
        after = state_of(uow.session, payment_id)
        record = {
            "provider_said": verdict.detail,
            "outcome": verdict.outcome.value,
            "reference": verdict.reference,
            "transaction_id": verdict.transaction_id,
            "before": {"status": before.status, "refunded_amount": str(before.refunded)},
            "after": {
                "status": after.status if after else None,
                "refunded_amount": str(after.refunded if after else ""),
            },
            "applied": outcome,
        }
        context.audit.repair(verdict.provider, kind, source, record, payment_id)
    return kind


def count(provider: str, kind: str | None) -> int:
    if kind is None:
        return 0
    RECONCILED.labels(provider=provider, kind=kind).inc()
    return 1
