"""Payments' view of the orders it may take money for, kept from the orders service's events: what
each order owes (OrderPlaced), whether it can still be paid (OrderCancelled), and how far its
fulfilment went (OrderShipped, OrderDelivered), which decides whether a refund restocks by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, select, update

from contracts import OrderCancelled, OrderPlaced
from payments.domain import OPEN_STATUSES, Fulfilment, OrderStatus, PaymentStatus
from payments.flows.cancellations import cancel_payment
from payments.models import PayableOrder, Payment, utcnow
from shopkit import tracing
from shopkit.db import upsert_insert
from shopkit.signals import CommitSignal
from shopkit.uow import UnitOfWork

ORDERS = cast(Table, PayableOrder.__table__)


def record_orders_placed(uow: UnitOfWork, events: Sequence[OrderPlaced], arrivals: CommitSignal) -> None:
    """One statement for the batch: new orders become payable; an order whose OrderCancelled overtook
    its OrderPlaced keeps its row (and stays cancelled) but learns what it owed."""
    now = utcnow()
    latest = {event.order_id: event for event in events}  # one row per order in one statement
    rows = [
        {
            "order_id": event.order_id,
            "user_id": event.user_id,
            "amount": event.total_amount,
            "currency": event.currency,
            "lines": [line.model_dump(mode="json") for line in event.items],
            "status": OrderStatus.PENDING_PAYMENT,
            "traceparent": _traceparent(uow, event),
            "created_at": now,
            "updated_at": now,
        }
        for event in latest.values()
    ]
    uow.session.execute(_upsert_orders(uow), rows)
    arrivals.mark(uow, latest)


def _traceparent(uow: UnitOfWork, event: OrderPlaced) -> str | None:
    """The trace the order's payments continue (only a well-formed one fits the column)."""
    causation = uow.causation_of(event)
    traceparent = causation.traceparent if causation else None
    return traceparent if tracing.parse(traceparent) else None


_UPSERTS: dict[str, Any] = {}


def _upsert_orders(uow: UnitOfWork) -> Any:
    """Built once per dialect, executed with the batch's rows (one multi-row INSERT ... ON CONFLICT)."""
    dialect = uow.session.get_bind().dialect.name
    if dialect not in _UPSERTS:
        insert = upsert_insert(uow.session, ORDERS)
        _UPSERTS[dialect] = insert.on_conflict_do_update(
            index_elements=[ORDERS.c.order_id],
            set_={
                "amount": insert.excluded.amount,
                "currency": insert.excluded.currency,
                "lines": insert.excluded.lines,
                "traceparent": insert.excluded.traceparent,
                "updated_at": insert.excluded.updated_at,
            },
        )
    return _UPSERTS[dialect]


def record_order_cancelled(uow: UnitOfWork, event: OrderCancelled) -> None:
    """The order can no longer be paid: its open payments are cancelled (closed at their provider after
    the commit). One being executed is left to its Execute: a success then is refunded."""
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
        select(Payment).where(Payment.order_id == event.order_id, Payment.status.in_(OPEN_STATUSES)).with_for_update()
    )
    for payment in open_payments:
        if payment.status == PaymentStatus.INITIATED:
            cancel_payment(uow, payment, f"order cancelled: {event.reason}")


def record_fulfilment(uow: UnitOfWork, order_id: object, fulfilment: Fulfilment) -> None:
    """Shipped, then delivered; a late OrderShipped never takes a delivered order back."""
    query = update(PayableOrder).where(PayableOrder.order_id == order_id)
    if fulfilment == Fulfilment.SHIPPED:
        query = query.where(PayableOrder.fulfilment.is_(None))
    uow.session.execute(query.values(fulfilment=fulfilment, updated_at=utcnow()))
