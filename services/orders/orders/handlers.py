"""The events orders consumes, one function each, named after it. They run inside the kit's unit of
work with the inbox record (never commit here). Each one hands its event to the saga as a fact about
its order; what follows is saga.decide's."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeAlias

from contracts import PaymentFailed, PaymentRefunded, PaymentSucceeded, ProductChanged, StockCommitted, StockRejected
from orders import service
from shopkit.consumer import EventHandlers
from shopkit.uow import UnitOfWork

log = logging.getLogger("orders.handlers")

SagaEvent: TypeAlias = PaymentSucceeded | PaymentFailed | StockCommitted | StockRejected | PaymentRefunded


def _advance(event: SagaEvent, uow: UnitOfWork) -> None:
    if service.advance_order(uow, event.order_id, event) is None:
        # Nothing to apply it to; retrying would not make the order appear.
        log.warning("event for an unknown order ignored", extra={"order_id": str(event.order_id), "event": event.TYPE})


def on_payment_succeeded(event: PaymentSucceeded, uow: UnitOfWork) -> None:
    _advance(event, uow)


def on_stock_committed(event: StockCommitted, uow: UnitOfWork) -> None:
    _advance(event, uow)


def on_stock_rejected(event: StockRejected, uow: UnitOfWork) -> None:
    _advance(event, uow)


def on_payment_refunded(event: PaymentRefunded, uow: UnitOfWork) -> None:
    _advance(event, uow)


def on_payment_failed(event: PaymentFailed, uow: UnitOfWork) -> None:
    _advance(event, uow)


def on_products_changed(events: Sequence[ProductChanged], uow: UnitOfWork) -> None:
    service.record_product_changes(uow, events)


HANDLERS = EventHandlers()
HANDLERS.add(PaymentSucceeded, on_payment_succeeded, name="payment-succeeded")
HANDLERS.add(StockCommitted, on_stock_committed, name="stock-committed")
HANDLERS.add(StockRejected, on_stock_rejected, name="stock-rejected")
HANDLERS.add(PaymentRefunded, on_payment_refunded, name="payment-refunded")
HANDLERS.add(PaymentFailed, on_payment_failed, name="payment-failed")
HANDLERS.add_batch(ProductChanged, on_products_changed, name="products-changed")
