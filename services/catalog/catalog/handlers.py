"""The events the catalog consumes, one function each. The kit runs each in a unit of work with its
inbox record and commits; these never commit themselves."""

from __future__ import annotations

from catalog import service
from contracts import PaymentRefunded, PaymentSucceeded
from shopkit.consumer import Handlers
from shopkit.db import UnitOfWork


def on_payment_succeeded(event: PaymentSucceeded, uow: UnitOfWork) -> None:
    service.commit_stock(uow, event)


def on_payment_refunded(event: PaymentRefunded, uow: UnitOfWork) -> None:
    service.release_stock(uow, event)


HANDLERS: Handlers = {
    PaymentSucceeded: [on_payment_succeeded],
    PaymentRefunded: [on_payment_refunded],
}
