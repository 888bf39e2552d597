"""Events payments consumes: one function per event, each inside the kit's unit of work (with inbox)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from contracts import OrderCancelled, OrderPlaced, RefundRequested
from payments.audit import for_payment, logged_in
from payments.domain import OPEN_STATUSES, OrderStatus, PaymentStatus
from payments.models import PayableOrder, Payment, utcnow
from payments.service import PaymentService
from shopkit.consumer import EventHandlers
from shopkit.db import upsert_insert
from shopkit.uow import UnitOfWork

log = logging.getLogger("payments.handlers")


def register_handlers(handlers: EventHandlers, service: PaymentService) -> None:
    def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
        # One statement: a new order becomes payable; if OrderCancelled overtook OrderPlaced the row
        # exists already and stays cancelled, but learns what the order owed.
        now = utcnow()
        table = PayableOrder.__table__
        insert = upsert_insert(uow.session, table).values(
            order_id=event.order_id,
            user_id=event.user_id,
            amount=event.total_amount,
            currency=event.currency,
            lines=[line.model_dump(mode="json") for line in event.items],
            status=OrderStatus.PENDING_PAYMENT,
            created_at=now,
            updated_at=now,
        )
        uow.session.execute(
            insert.on_conflict_do_update(
                index_elements=[table.c.order_id],
                set_={
                    "amount": insert.excluded.amount,
                    "currency": insert.excluded.currency,
                    "lines": insert.excluded.lines,
                    "updated_at": now,
                },
            )
        )

    def on_order_cancelled(event: OrderCancelled, uow: UnitOfWork) -> None:
        session = uow.session
        order = session.get(PayableOrder, event.order_id, with_for_update=True)
        if order is None:
            session.add(
                PayableOrder(
                    order_id=event.order_id,
                    user_id=event.user_id,
                    amount=0,
                    currency="BDT",
                    lines=[],
                    status=OrderStatus.CANCELLED,
                )
            )
            return
        if order.status == OrderStatus.PENDING_PAYMENT:
            order.status = OrderStatus.CANCELLED
        open_payments = session.scalars(
            select(Payment)
            .where(Payment.order_id == event.order_id, Payment.status.in_(OPEN_STATUSES))
            .with_for_update()
        )
        for payment in open_payments:
            if payment.status == PaymentStatus.EXECUTING:
                continue  # its Execute decides; a success then is refunded (the order is cancelled)
            payment.status = PaymentStatus.CANCELLED
            payment.failure_reason = f"order cancelled: {event.reason}"[:1000]
            if payment.provider == "stripe" and payment.provider_reference:
                # Expiring twice is harmless (Stripe refuses a non-open session), so a redelivery is safe.
                with logged_in(session), for_payment(payment.id):
                    service.stripe.expire_session(payment.provider_reference)

    def on_refund_requested(event: RefundRequested, uow: UnitOfWork) -> None:
        # The ledger row is written here; the sweeper asks the provider once this has committed.
        service.request_refund(event.payment_id, event.order_id, event.reason, uow)

    handlers.add(OrderPlaced, on_order_placed, name="order-placed")
    handlers.add(OrderCancelled, on_order_cancelled, name="order-cancelled")
    handlers.add(RefundRequested, on_refund_requested, name="refund-requested")
