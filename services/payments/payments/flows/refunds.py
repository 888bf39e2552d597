"""Refunds, full or partial: asked for by orders (RefundRequested) or an admin, written to the ledger in
the asker's transaction, then asked of the provider by the provider-calls worker, once per request:
the same request again finds its row, the provider gets one idempotency key per row, and a lease
(not a lock: no transaction is open during the call) lets another worker retry a call whose worker
died."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial

from sqlalchemy import bindparam, or_, select, update

from payments.audit import for_payment
from payments.context import PaymentsContext
from payments.domain import CAPTURED_STATUSES, RefundRefused, RefundStatus, money, refund_amount
from payments.flows import ledger
from payments.flows.locks import lock_payment
from payments.flows.side_by_side import run_side_by_side
from payments.models import Payment, Refund, utcnow
from payments.providers.base import ProviderRefused, ProviderUnavailable, RefundCall, RefundResult
from payments.providers.registry import ProviderRegistry
from shopkit.problems import Conflict, NotFound, Unprocessable
from shopkit.uow import UnitOfWork

log = logging.getLogger("payments.refunds")

# Longer than a provider call can take with its retries: a live worker never loses its claim.
REFUND_LEASE = timedelta(seconds=120)
MAX_BACKOFF = 300.0
DUE_BATCH = 20


def request_refund(
    uow: UnitOfWork,
    payment: Payment,
    *,
    amount: Decimal | None,
    reason: str,
    restock: bool | None,
    key: str,
    max_refunds: int | None,
) -> Refund | None:
    """Ask for a refund of a locked payment: `amount` None is all that is left. Returns the ledger
    row (the earlier one when this key asked before), or None when nothing is left to refund.
    Raises RefundRefused."""
    earlier = ledger.refund_with_key(uow.session, payment.id, key)
    if earlier is not None:
        if amount is not None and money(amount) != earlier.amount:
            raise RefundRefused("this Idempotency-Key was already used for another refund", conflict=True)
        return earlier
    if payment.status not in CAPTURED_STATUSES:
        raise RefundRefused(f"only a paid payment can be refunded; this one is {payment.status}", conflict=True)
    totals = ledger.totals(uow.session, payment)
    value = refund_amount(totals, amount, max_refunds=max_refunds)
    if value is None:
        return None
    if restock is None:
        restock = ledger.restock_default(uow.session, payment, value, totals.rest)
    return ledger.open_refund(uow, payment, value, reason, restock=restock, key=key)


def refund_for_order(
    uow: UnitOfWork,
    *,
    order_id: uuid.UUID,
    payment_id: uuid.UUID | None,
    amount: Decimal | None,
    reason: str,
    restock: bool,
    key: str,
    max_refunds_of: dict[str, int | None],
) -> Refund | None:
    """RefundRequested: refund the named payment, or else the order's paying one."""
    if payment_id is None:
        payment_id = uow.session.scalar(
            select(Payment.id)
            .where(Payment.order_id == order_id, Payment.status.in_(CAPTURED_STATUSES))
            .order_by(Payment.created_at)
        )
    _, payment = lock_payment(uow.session, payment_id) if payment_id else (None, None)
    if payment is None or payment.order_id != order_id:
        log.warning(
            "refund requested for an unknown payment", extra={"payment_id": str(payment_id), "order_id": str(order_id)}
        )
        return None
    try:
        return request_refund(
            uow,
            payment,
            amount=amount,
            reason=reason,
            restock=restock,
            key=key,
            max_refunds=max_refunds_of.get(payment.provider),
        )
    except RefundRefused as exc:
        # Redelivering the request would be refused the same way: record why and go on.
        log.error("refund request refused", extra={"payment_id": str(payment.id), "error": str(exc)})
        return None


def refund_payment(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    *,
    amount: Decimal | None,
    reason: str,
    restock: bool | None,
    key: str,
    providers: ProviderRegistry,
) -> Payment:
    """An admin's refund: 202 once the ledger row is written; the provider is asked right after."""
    _, payment = lock_payment(uow.session, payment_id)
    if payment is None:
        raise NotFound("no such payment")
    try:
        request_refund(
            uow,
            payment,
            amount=amount,
            reason=reason,
            restock=restock,
            key=key,
            max_refunds=providers.get(payment.provider).max_refunds,
        )
    except RefundRefused as exc:
        raise (Conflict(str(exc)) if exc.conflict else Unprocessable(str(exc))) from exc
    uow.commit()
    return payment


# Asking the provider


_DUE = (
    select(Refund.id)
    .where(
        Refund.status == RefundStatus.PENDING,
        or_(Refund.claimed_until.is_(None), Refund.claimed_until < bindparam("now")),
    )
    .order_by(Refund.created_at)
    .limit(DUE_BATCH)
)


def run_due_refunds(context: PaymentsContext) -> int:
    with context.uow() as uow:
        due = list(uow.session.scalars(_DUE, {"now": utcnow()}))
    return run_side_by_side(partial(run_refund, context), due, name="refund")


@dataclass(frozen=True)
class _Claimed:
    provider: str
    payment_id: uuid.UUID
    call: RefundCall


def run_refund(context: PaymentsContext, refund_id: uuid.UUID) -> None:
    with context.audit.collecting():
        claimed = _claim(context, refund_id)
        if claimed is None:
            return
        with for_payment(claimed.payment_id):
            try:
                result = context.providers.get(claimed.provider).refund(claimed.call)
            except ProviderUnavailable as exc:
                _retry_later(context, refund_id, str(exc))
                return
            except ProviderRefused as exc:
                _give_up(context, refund_id, str(exc))
                return
            _record(context, refund_id, result)


def _claim(context: PaymentsContext, refund_id: uuid.UUID) -> _Claimed | None:
    """Take the lease on a pending row, and say what to ask the provider."""
    with context.uow() as uow:
        session = uow.session
        claimed = session.execute(  # type: ignore[attr-defined]
            update(Refund)
            .where(
                Refund.id == refund_id,
                Refund.status == RefundStatus.PENDING,
                or_(Refund.claimed_until.is_(None), Refund.claimed_until < utcnow()),
            )
            .values(claimed_until=utcnow() + REFUND_LEASE, attempts=Refund.attempts + 1)
        ).rowcount
        if not claimed:
            return None
        refund = session.get(Refund, refund_id)
        payment = session.get(Payment, refund.payment_id) if refund else None
        assert refund is not None and payment is not None
        known = frozenset(
            str(r)
            for r in session.scalars(
                select(Refund.provider_refund_id).where(
                    Refund.payment_id == payment.id, Refund.provider_refund_id.is_not(None)
                )
            )
        )
        context.commit(uow)
    call = RefundCall(
        refund_id=refund.id,
        reference=payment.provider_reference or "",
        transaction_id=payment.provider_transaction_id or "",
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        order_id=payment.order_id,
        known_refund_ids=known,
        retry=refund.attempts > 1,
    )
    return _Claimed(payment.provider, payment.id, call)


def _retry_later(context: PaymentsContext, refund_id: uuid.UUID, error: str) -> None:
    log.warning("a refund could not be made now; retrying", extra={"refund_id": str(refund_id), "error": error})
    with context.uow() as uow:
        refund = uow.session.get(Refund, refund_id)
        if refund is None or refund.status != RefundStatus.PENDING:
            return
        backoff = min(context.settings.sweep_interval * 2 ** min(refund.attempts, 10), MAX_BACKOFF)
        refund.last_error = error[:2000]
        refund.claimed_until = utcnow() + timedelta(seconds=backoff)
        context.commit(uow)


def _give_up(context: PaymentsContext, refund_id: uuid.UUID, error: str) -> None:
    log.error("the provider refused a refund", extra={"refund_id": str(refund_id), "error": error})
    with context.uow() as uow:
        payment, refund = _lock_refund(uow, refund_id)
        if payment is None or refund is None or refund.status != RefundStatus.PENDING:
            return
        ledger.fail_refund(uow, payment, refund, error)
        context.commit(uow)


def _record(context: PaymentsContext, refund_id: uuid.UUID, result: RefundResult) -> None:
    with context.uow() as uow:
        payment, refund = _lock_refund(uow, refund_id)
        if payment is None or refund is None or refund.status != RefundStatus.PENDING:
            return
        ledger.finish_refund(uow, payment, refund, result.provider_refund_id)
        context.commit(uow)


def _lock_refund(uow: UnitOfWork, refund_id: uuid.UUID) -> tuple[Payment | None, Refund | None]:
    payment_id = uow.session.scalar(select(Refund.payment_id).where(Refund.id == refund_id))
    if payment_id is None:
        return None, None
    _, payment = lock_payment(uow.session, payment_id)
    return payment, uow.session.get(Refund, refund_id, with_for_update=True, populate_existing=True)
