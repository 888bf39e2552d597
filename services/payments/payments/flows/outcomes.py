"""Recording what a provider says about a payment: `apply_verdict` is the one function that a Stripe
webhook, the bKash callback, the sweep of stuck bKash executions and reconciliation (flows/reconcile.py,
flows/repairs.py) all call.

A payment is marked paid only by a verdict naming the reference the shop itself created for it (the
Checkout Session id, the bKash paymentID): a payment without one never succeeds, whatever an event's
metadata claims. A success for a payment already closed here (failed, cancelled) or for an order
that cannot take it (cancelled, already paid) is refunded at once and never reported as paid."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from contracts import OrderLine, PaymentFailed, PaymentSucceeded
from payments.domain import (
    CAPTURED_STATUSES,
    CLOSED_STATUSES,
    OPEN_STATUSES,
    OrderStatus,
    PaymentStatus,
    decide_on_late_success,
    decide_on_success,
    same_money,
)
from payments.flows import ledger
from payments.flows.locks import Locked, lock_payment, lock_payments_with_references, payment_with_reference
from payments.models import PayableOrder, Payment
from payments.providers.base import Outcome, ProviderVerdict
from shopkit import tracing
from shopkit.uow import UnitOfWork

log = logging.getLogger("payments.outcomes")


def lock_for_verdicts(uow: UnitOfWork, verdicts: Iterable[ProviderVerdict]) -> Locked:
    """The payments a batch of verdicts applies to, with their orders, locked in one go (apply_verdict
    then takes them from here)."""
    references: dict[str, set[str]] = defaultdict(set)
    for verdict in verdicts:
        # As apply_verdict below: only these name a payment by the reference the shop created.
        if verdict.outcome not in (Outcome.UNKNOWN, Outcome.REFUNDED) and verdict.reference:
            references[verdict.provider].add(verdict.reference)
    locked: Locked = {}
    for provider, of_provider in sorted(references.items()):
        locked |= lock_payments_with_references(uow.session, provider, of_provider)
    return locked


def apply_verdict(uow: UnitOfWork, verdict: ProviderVerdict, locked: Locked | None = None) -> str:
    """Apply what a provider says; returns what was done, for the event's or the log's record.
    `locked`: from lock_for_verdicts, in this transaction, when a batch of verdicts is applied."""
    if verdict.outcome is Outcome.UNKNOWN:
        return f"no trustworthy answer ({verdict.detail}): nothing changed"
    if verdict.outcome is Outcome.REFUNDED:
        return ledger.record_provider_refunds(uow, verdict)
    if not verdict.reference:
        return "ignored: the provider named no payment of ours"
    order: PayableOrder | None
    payment: Payment | None
    found = locked.get((verdict.provider, verdict.reference)) if locked is not None else None
    if found is not None:
        order, payment = found
    else:
        key = payment_with_reference(uow.session, verdict.provider, verdict.reference)
        order, payment = lock_payment(uow.session, key.id, key.order_id) if key else (None, None)
    if payment is None:
        return "ignored: no payment has this provider reference"
    # The provider's word arrives with no trace of its own (a webhook, a callback, a sweep): it is
    # applied in the checkout's trace, so what it causes downstream joins the order's trace.
    with tracing.span(
        f"apply {verdict.provider} verdict",
        service="payments",
        parent=payment.traceparent,
        attributes={"shop.payment_id": str(payment.id), "shop.outcome": str(verdict.outcome)},
    ):
        return _apply_to_payment(uow, order, payment, verdict)


def _apply_to_payment(uow: UnitOfWork, order: PayableOrder | None, payment: Payment, verdict: ProviderVerdict) -> str:
    if verdict.outcome is Outcome.PAID:
        return record_success(uow, order, payment, verdict)
    if verdict.outcome is Outcome.PENDING:
        if payment.status == PaymentStatus.EXECUTING:
            # Not finished at the provider (an early or forged callback): payable again, nothing taken.
            payment.status = PaymentStatus.INITIATED
        return f"not paid yet ({verdict.detail}); payment {payment.status}"
    status = PaymentStatus.FAILED if verdict.outcome is Outcome.FAILED else PaymentStatus.CANCELLED
    record_failure(uow, payment, status, f"{verdict.provider}: {verdict.detail}")
    return f"payment {payment.status}"


def record_success(uow: UnitOfWork, order: PayableOrder | None, payment: Payment, verdict: ProviderVerdict) -> str:
    if payment.status in CAPTURED_STATUSES:
        return f"payment already {payment.status}"
    if not same_money(payment.amount, payment.currency, verdict.amount, verdict.currency):
        log.error(
            "provider amount does not match the payment: not marked paid",
            extra={
                "payment_id": str(payment.id),
                "expected": f"{payment.amount} {payment.currency}",
                "got": f"{verdict.amount} {verdict.currency}",
            },
        )
        record_failure(uow, payment, PaymentStatus.FAILED, "amount or currency mismatch at the provider")
        return f"amount mismatch: payment {payment.status}"
    late = payment.status in CLOSED_STATUSES
    decision = (
        decide_on_late_success(payment.status)
        if late
        else decide_on_success(order.status if order else OrderStatus.CANCELLED, other_succeeded_payment=False)
    )
    payment.provider_transaction_id = verdict.transaction_id
    if decision.refund_reason is not None:
        log.warning(
            "a payment succeeded that cannot be kept; refunding",
            extra={"payment_id": str(payment.id), "reason": decision.refund_reason},
        )
        ledger.open_refund(
            uow, payment, payment.amount, decision.refund_reason, restock=False, key=ledger.AUTOMATIC_REFUND_KEY
        )
        return f"refunding: {decision.refund_reason}"
    assert order is not None
    payment.status = PaymentStatus.SUCCEEDED
    payment.failure_reason = None
    order.status = OrderStatus.PAID
    uow.emit(
        PaymentSucceeded(
            payment_id=payment.id,
            order_id=payment.order_id,
            provider=payment.provider,  # type: ignore[arg-type]
            amount=payment.amount,
            currency=payment.currency,
            items=[OrderLine.model_validate(line) for line in order.lines],
        ),
        correlation_id=payment.order_id,
    )
    log.info("payment succeeded", extra={"payment_id": str(payment.id), "order_id": str(payment.order_id)})
    return "payment succeeded"


def record_failure(uow: UnitOfWork, payment: Payment, status: PaymentStatus, reason: str) -> None:
    """An open payment ends without money; the order stays payable."""
    if payment.status not in OPEN_STATUSES:
        return
    payment.status = status
    payment.failure_reason = reason[:1000]
    uow.emit(
        PaymentFailed(
            payment_id=payment.id,
            order_id=payment.order_id,
            provider=payment.provider,  # type: ignore[arg-type]
            reason=reason,
        ),
        correlation_id=payment.order_id,
    )
