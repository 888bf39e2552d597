"""bKash's callback. It proves nothing by itself (anyone can call it with any paymentID): on `success`
the shop executes the payment (at most once: the initiated -> executing transition is the claim) and
believes bKash's answer; on `failure` or `cancel` it asks bKash (Query) and closes the payment only
when bKash says it is closed, so a forged callback cannot cancel a payment the customer is making."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import select, update

from payments.audit import for_payment
from payments.context import PaymentsContext
from payments.domain import PaymentStatus
from payments.flows.locks import payment_with_reference
from payments.flows.outcomes import apply_verdict
from payments.models import Payment, utcnow
from payments.providers.base import ProviderVerdict
from shopkit.problems import NotFound

STUCK_BATCH = 50


def on_callback(context: PaymentsContext, reference: str, status: str, url: str, query: Mapping[str, str]) -> Payment:
    bkash = context.providers.bkash
    with context.audit.collecting():
        context.audit.inbound(bkash.name, "callback", url, dict(query))
        with context.uow() as uow:
            key = payment_with_reference(uow.session, bkash.name, reference)
        if key is None:
            raise NotFound("no such bKash payment")
        payment_id = key.id
        with for_payment(payment_id):
            if status == "success":
                if _claim_execution(context, payment_id):
                    _apply(context, bkash.complete(reference))
            elif _is_initiated(context, payment_id):
                _apply(context, bkash.lookup(reference))
            with context.uow() as uow:
                payment = uow.session.get(Payment, payment_id)
                assert payment is not None
                context.commit(uow)  # the callback's log entries, if nothing else wrote them
                return payment


def _claim_execution(context: PaymentsContext, payment_id: uuid.UUID) -> bool:
    """A reloaded or repeated callback finds the claim taken and only reads the state: Execute is
    called at most once per payment (and never for a payment cancelled here)."""
    with context.uow() as uow:
        claimed = uow.session.execute(  # type: ignore[attr-defined]
            update(Payment)
            .where(Payment.id == payment_id, Payment.status == PaymentStatus.INITIATED)
            .values(status=PaymentStatus.EXECUTING, updated_at=utcnow())
        ).rowcount
        context.commit(uow)
    return bool(claimed)


def _is_initiated(context: PaymentsContext, payment_id: uuid.UUID) -> bool:
    with context.uow() as uow:
        return uow.session.scalar(select(Payment.status).where(Payment.id == payment_id)) == PaymentStatus.INITIATED


def _apply(context: PaymentsContext, verdict: ProviderVerdict) -> None:
    with context.uow() as uow:
        apply_verdict(uow, verdict)
        context.commit(uow)


def settle_stuck_executions(context: PaymentsContext) -> int:
    """A process that died mid-Execute (or whose Execute and Query both went unanswered) leaves the
    payment `executing`: its provider's lookup decides, as for a timeout."""
    cutoff = utcnow() - timedelta(seconds=context.settings.bkash_stuck_after)
    with context.uow() as uow:
        stuck = list(
            uow.session.execute(
                select(Payment.id, Payment.provider, Payment.provider_reference)
                .where(Payment.status == PaymentStatus.EXECUTING, Payment.updated_at < cutoff)
                .limit(STUCK_BATCH)
            )
        )
    for payment_id, provider, reference in stuck:
        if reference:
            with context.audit.collecting(), for_payment(payment_id):
                _apply(context, context.providers.get(provider).lookup(reference))
    return len(stuck)
