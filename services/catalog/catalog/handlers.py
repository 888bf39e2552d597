"""The events the catalog consumes, one function each. The kit applies them in a unit of work with their
inbox records and commits; these never commit themselves."""

from __future__ import annotations

from catalog import service
from contracts import PaymentRefunded, PaymentSucceeded
from shopkit.consumer import EventHandlers
from shopkit.uow import UnitOfWork


def on_payment_succeeded(event: PaymentSucceeded, uow: UnitOfWork) -> None:
    service.commit_stock(uow, event)


def on_payment_refunded(event: PaymentRefunded, uow: UnitOfWork) -> None:
    service.release_stock(uow, event)


HANDLERS = EventHandlers()
HANDLERS.add(PaymentSucceeded, on_payment_succeeded, name="payment-succeeded")
HANDLERS.add(PaymentRefunded, on_payment_refunded, name="payment-refunded")
