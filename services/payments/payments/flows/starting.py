"""Starting a payment: the payment row is claimed in one transaction (with the order's row locked), the
provider is asked to open it outside any transaction, and its answer is recorded in a second one."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from payments.audit import for_payment
from payments.context import PaymentsContext
from payments.domain import OPEN_STATUSES, ZERO, OrderStatus, PaymentStatus
from payments.flows.cancellations import cancel_at_provider, cancel_payment
from payments.flows.locks import lock_order_row, lock_payment
from payments.models import Payment, utcnow
from payments.providers.base import Checkout, OpenedPayment, PaymentProvider, ProviderRefused, ProviderUnavailable
from shopkit import tracing
from shopkit.auth import Principal
from shopkit.problems import Conflict, NotFound, Problem, ServiceUnavailable, Unprocessable
from shopkit.uow import UnitOfWork

log = logging.getLogger("payments.starting")

PAYMENTS = cast(Table, Payment.__table__)
# Seconds a client is asked to wait when the provider could not open the payment (maintenance, 5xx).
RETRY_AFTER = "5"
# One statement on every payment started (built once): no locks needed, the row is ours.
_RECORD_OPENED = (
    update(PAYMENTS)
    .where(PAYMENTS.c.id == bindparam("payment_id"))
    .values(provider_reference=bindparam("reference"), redirect_url=bindparam("url"), updated_at=bindparam("now"))
    .returning(PAYMENTS.c.status)
)
# The new payment is only inserted (built once): the ORM's identity map and flush would be work for nothing.
_NEW_PAYMENT = insert(PAYMENTS)
_WITH_KEY = select(Payment).where(Payment.user_id == bindparam("user_id"), Payment.idempotency_key == bindparam("key"))
_OPEN_PAYMENTS = (
    select(Payment)
    .where(Payment.order_id == bindparam("order_id"), Payment.status.in_(OPEN_STATUSES))
    .with_for_update()
)


# A customer pays the moment the order is placed, usually before OrderPlaced has reached payments: the
# request waits that moment out here (woken by the commit that records the order: PaymentsContext.arrivals)
# rather than answering a 409 for the client to send again through the gateway. It reads again every
# NOT_RECEIVED_RECHECK seconds, since another replica may be the one that receives the event.
NOT_RECEIVED_WAIT = 0.6
NOT_RECEIVED_RECHECK = 0.15


class _NotReceived(Exception):
    """Payments has not received the order (its OrderPlaced) yet."""


@dataclass(frozen=True)
class StartedPayment:
    payment: Payment
    created: bool


@dataclass(frozen=True)
class _Claimed:
    started: StartedPayment
    checkout: Checkout | None  # None: an existing payment answers, nothing to open


def start_payment(
    context: PaymentsContext, principal: Principal, order_id: uuid.UUID, provider_name: str, key: str | None
) -> StartedPayment:
    provider = context.providers.get(provider_name)
    if context.backlog is not None:
        context.backlog.admit()
    claimed = _claim_once_received(context, principal, order_id, provider, key)
    if claimed.checkout is None:
        return claimed.started
    payment = claimed.started.payment
    with context.audit.collecting(), for_payment(payment.id):
        try:
            opened = provider.open(claimed.checkout)
        except (ProviderUnavailable, ProviderRefused) as exc:
            _opening_failed(context, payment.id, str(exc))
            # The order stays payable: a new request opens a new payment, once the provider is back.
            raise ServiceUnavailable(
                f"{provider.name} is not available right now; try again", headers={"Retry-After": RETRY_AFTER}
            ) from exc
        recorded = _record_opened(context, payment, opened)
    log.info(
        "payment created",
        extra={"payment_id": str(payment.id), "order_id": str(payment.order_id), "provider": provider.name},
    )
    return StartedPayment(recorded, created=True)


def _claim_once_received(
    context: PaymentsContext, principal: Principal, order_id: uuid.UUID, provider: PaymentProvider, key: str | None
) -> _Claimed:
    deadline = time.monotonic() + NOT_RECEIVED_WAIT
    with context.arrivals.watch(order_id) as arrival:
        while True:
            try:
                return _claim_with_retry(context, principal, order_id, provider, key)
            except _NotReceived:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Conflict(
                        "this order is not payable yet: payments has not received it (it was probably just "
                        "placed); retry in a moment",
                        retryable=True,
                    ) from None
                arrival.wait(min(left, NOT_RECEIVED_RECHECK))


def _claim_with_retry(
    context: PaymentsContext, principal: Principal, order_id: uuid.UUID, provider: PaymentProvider, key: str | None
) -> _Claimed:
    key_taken = False
    for _ in range(3):
        with context.uow() as uow:
            try:
                return _claim(uow, principal, order_id, provider, key, key_taken=key_taken)
            except IntegrityError:
                # A concurrent request with the same Idempotency-Key won the race (or this is a replay
                # of an earlier request): answer with its payment.
                uow.rollback()
                key_taken = True
    raise Conflict("this payment request is being handled by another request; retry", retryable=True)


def _claim(
    uow: UnitOfWork,
    principal: Principal,
    order_id: uuid.UUID,
    provider: PaymentProvider,
    key: str | None,
    *,
    key_taken: bool = False,
) -> _Claimed:
    """A new Idempotency-Key costs no read: the key is looked up only when the request cannot open a
    payment (the key's unique index refused it, the order is no longer payable, an open payment
    answers), since only then can an earlier request with it be the answer."""
    if key and key_taken and (answered := _answer_by_key(uow, principal, order_id, provider, key)):
        return answered
    try:
        order = _payable_order(uow, principal, order_id, provider)
        current = _close_other_open_payments(uow, order_id, provider.name)
    except Problem:
        if key and (answered := _answer_by_key(uow, principal, order_id, provider, key)):
            return answered
        raise
    if current is not None:
        if (
            key
            and current.idempotency_key != key
            and (answered := _answer_by_key(uow, principal, order_id, provider, key))
        ):
            return answered
        return _Claimed(StartedPayment(current, created=False), None)
    now = utcnow()
    row = {
        "id": uuid.uuid4(),
        "order_id": order.order_id,
        "user_id": order.user_id,
        "provider": provider.name,
        "status": PaymentStatus.INITIATED,
        "amount": order.amount,
        "currency": order.currency,
        "refunded_amount": ZERO,
        "idempotency_key": key,
        "traceparent": order.traceparent or tracing.current_traceparent(),
        "created_at": now,
        "updated_at": now,
    }
    uow.session.connection().execute(_NEW_PAYMENT, row)
    # What the request answers with: the row as inserted, outside any session.
    payment = Payment(**row)
    checkout = Checkout(
        payment_id=payment.id,
        order_id=order.order_id,
        user_id=order.user_id,
        amount=order.amount,
        currency=order.currency,
        lines=list(order.lines),
    )
    uow.commit()
    return _Claimed(StartedPayment(payment, created=True), checkout)


def _answer_by_key(
    uow: UnitOfWork, principal: Principal, order_id: uuid.UUID, provider: PaymentProvider, key: str
) -> _Claimed | None:
    """The payment an earlier request with this Idempotency-Key started, if there is one."""
    existing = uow.session.scalar(_WITH_KEY, {"user_id": principal.user_id, "key": key})
    if existing is None:
        return None
    if existing.order_id != order_id or existing.provider != provider.name:
        raise Conflict("this Idempotency-Key was already used for another payment request")
    return _Claimed(StartedPayment(existing, created=False), None)


def _payable_order(
    uow: UnitOfWork, principal: Principal, order_id: uuid.UUID, provider: PaymentProvider
) -> Row[*tuple[Any, ...]]:
    order = lock_order_row(uow.session, order_id)
    if order is None:
        raise _NotReceived
    if order.user_id != principal.user_id:
        raise NotFound("no such order")
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise Conflict(f"the order is {order.status}, not pending_payment")
    refusal = provider.refuses_currency(order.currency)
    if refusal:
        raise Unprocessable(refusal)
    return order


def _close_other_open_payments(uow: UnitOfWork, order_id: uuid.UUID, provider: str) -> Payment | None:
    """The open payment with this provider answers again; one with another provider is cancelled."""
    open_payments = uow.session.scalars(_OPEN_PAYMENTS, {"order_id": order_id})
    for payment in open_payments:
        if payment.provider == provider:
            return payment
        if payment.status == PaymentStatus.EXECUTING:
            raise Conflict("a payment for this order is being completed; wait for its outcome")
        cancel_payment(uow, payment, f"replaced by a {provider} payment")
    return None


def _opening_failed(context: PaymentsContext, payment_id: uuid.UUID, error: str) -> None:
    log.warning("provider refused to open a payment", extra={"payment_id": str(payment_id), "error": error})
    with context.uow() as uow:
        _, payment = lock_payment(uow.session, payment_id)
        if payment is not None and payment.status == PaymentStatus.INITIATED:
            # No provider reference: nothing can ever mark this payment paid.
            payment.status = PaymentStatus.FAILED
            payment.failure_reason = f"the provider could not open the payment: {error}"[:1000]
            # The client was told to try again (503): its retry with the same Idempotency-Key opens a
            # new payment rather than being answered with this failed one.
            payment.idempotency_key = None
        context.commit(uow)


def _record_opened(context: PaymentsContext, payment: Payment, opened: OpenedPayment) -> Payment:
    with context.uow() as uow:
        status = uow.session.execute(
            _RECORD_OPENED,
            {"payment_id": payment.id, "reference": opened.reference, "url": opened.redirect_url, "now": utcnow()},
        ).scalar_one()
        if status == PaymentStatus.CANCELLED:
            # Cancelled while the provider was opening it (OrderCancelled, another provider chosen):
            # it must not stay payable there.
            _, cancelled = lock_payment(uow.session, payment.id)
            assert cancelled is not None
            cancel_at_provider(uow, cancelled)
        context.commit(uow)
    payment.provider_reference, payment.redirect_url, payment.status = opened.reference, opened.redirect_url, status
    return payment
