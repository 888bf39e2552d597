"""The saga's consumed events, one function each. They run inside the kit's unit of work with the
inbox record (never commit here), and may arrive duplicated or out of order: each one looks at the
order's current state and does only what is still missing."""

from __future__ import annotations

import logging

from contracts import (
    OrderConfirmed,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    RefundRequested,
    StockCommitted,
    StockRejected,
)
from orders.domain import OrderStatus
from orders.models import Order, RefundedPayment
from orders.service import add_note, change_status, lock_order, utcnow
from shopkit.consumer import EventHandlers
from shopkit.uow import UnitOfWork

log = logging.getLogger("orders.handlers")

S = OrderStatus


def _order(uow: UnitOfWork, event: object, order_id: object) -> Order | None:
    order = lock_order(uow.session, order_id)  # type: ignore[arg-type]
    if order is None:
        # Nothing to apply it to; retrying would not make the order appear.
        log.warning(
            "event for an unknown order ignored",
            extra={"order_id": str(order_id), "event": type(event).__name__},
        )
    return order


def on_payment_succeeded(event: PaymentSucceeded, uow: UnitOfWork) -> None:
    order = _order(uow, event, event.order_id)
    if order is None:
        return
    payment = event.payment_id
    if order.status == S.PENDING_PAYMENT:
        order.payment_id, order.payment_provider = payment, event.provider
        change_status(uow.session, order, S.PAID, f"payment {payment} succeeded ({event.provider})")
        _apply_earlier_refund(uow, order)
    elif order.status == S.CANCELLED:
        reason = "the order was cancelled before the payment succeeded"
        add_note(uow.session, order, f"payment {payment} succeeded after cancellation; refund requested")
        uow.emit(RefundRequested(order_id=order.id, payment_id=payment, reason=reason), correlation_id=order.id)
    elif order.payment_id is None or order.payment_id == payment:
        # The same payment again, or the one a stock event already named: only fill in what is missing.
        order.payment_id = payment
        order.payment_provider = order.payment_provider or event.provider
    else:
        reason = f"the order is already paid by payment {order.payment_id}"
        add_note(uow.session, order, f"second payment {payment} succeeded; refund requested")
        uow.emit(RefundRequested(order_id=order.id, payment_id=payment, reason=reason), correlation_id=order.id)


def _paid_out_of_order(uow: UnitOfWork, order: Order, event: StockCommitted | StockRejected) -> None:
    """The catalog only answers a PaymentSucceeded, so a stock event for an unpaid order proves the
    payment: record it as the paying one before moving on."""
    order.payment_id = order.payment_id or event.payment_id
    change_status(uow.session, order, S.PAID, f"payment {event.payment_id} succeeded (learnt from the catalog)")
    _apply_earlier_refund(uow, order)


def _apply_earlier_refund(uow: UnitOfWork, order: Order) -> None:
    """The paying payment's refund overtook its success: the order ends refunded, as in order."""
    if order.payment_id is None:
        return
    refund = uow.session.get(RefundedPayment, (order.id, order.payment_id))
    if refund is not None:
        change_status(uow.session, order, S.REFUND_PENDING, f"payment {order.payment_id} was already refunded")
        change_status(uow.session, order, S.REFUNDED, f"payment {order.payment_id} refunded: {refund.reason}")


def on_stock_committed(event: StockCommitted, uow: UnitOfWork) -> None:
    order = _order(uow, event, event.order_id)
    if order is None:
        return
    if order.status == S.PENDING_PAYMENT:
        _paid_out_of_order(uow, order, event)
    if order.status == S.PAID:
        change_status(uow.session, order, S.CONFIRMED, "stock committed")
        uow.emit(
            OrderConfirmed(
                order_id=order.id, user_id=order.user_id, total_amount=order.total_amount, currency=order.currency
            ),
            correlation_id=order.id,
        )
    elif order.status != S.CONFIRMED:
        # Cancelled or being refunded: the catalog releases this stock when the payment is refunded.
        add_note(uow.session, order, f"stock committed while {order.status}; it is released on refund")


def on_stock_rejected(event: StockRejected, uow: UnitOfWork) -> None:
    order = _order(uow, event, event.order_id)
    if order is None:
        return
    if order.status == S.PENDING_PAYMENT:
        _paid_out_of_order(uow, order, event)
    if order.status == S.PAID:
        shortages = ", ".join(f"{s.product_id} ({s.requested} > {s.available})" for s in event.shortages)
        change_status(uow.session, order, S.REFUND_PENDING, f"stock rejected: {shortages or 'unavailable'}")
        uow.emit(
            RefundRequested(
                order_id=order.id, payment_id=order.payment_id or event.payment_id, reason="stock unavailable"
            ),
            correlation_id=order.id,
        )
    elif order.status in (S.CANCELLED, S.CONFIRMED):
        add_note(uow.session, order, f"stock rejected while {order.status}")


def on_payment_refunded(event: PaymentRefunded, uow: UnitOfWork) -> None:
    order = _order(uow, event, event.order_id)
    if order is None:
        return
    if order.payment_id != event.payment_id:
        add_note(uow.session, order, f"payment {event.payment_id} refunded: {event.reason}")
        if uow.session.get(RefundedPayment, (order.id, event.payment_id)) is None:
            uow.session.add(
                RefundedPayment(order_id=order.id, payment_id=event.payment_id, reason=event.reason, at=utcnow())
            )
        return
    if order.status in (S.PAID, S.CONFIRMED):
        # Refunded without the order asking (an admin refund): pass through refund_pending.
        change_status(uow.session, order, S.REFUND_PENDING, f"refund of payment {event.payment_id}: {event.reason}")
    if order.status == S.REFUND_PENDING:
        change_status(uow.session, order, S.REFUNDED, f"payment {event.payment_id} refunded: {event.reason}")


def on_payment_failed(event: PaymentFailed, uow: UnitOfWork) -> None:
    order = _order(uow, event, event.order_id)
    if order is None:
        return
    # The order stays payable: the customer may try again with another payment.
    add_note(uow.session, order, f"payment {event.payment_id} failed ({event.provider}): {event.reason}")


HANDLERS = EventHandlers()
HANDLERS.add(PaymentSucceeded, on_payment_succeeded, name="payment-succeeded")
HANDLERS.add(StockCommitted, on_stock_committed, name="stock-committed")
HANDLERS.add(StockRejected, on_stock_rejected, name="stock-rejected")
HANDLERS.add(PaymentRefunded, on_payment_refunded, name="payment-refunded")
HANDLERS.add(PaymentFailed, on_payment_failed, name="payment-failed")
