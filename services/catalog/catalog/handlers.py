"""The events the catalog consumes, one function each. The kit applies them in a unit of work with their
inbox records and commits; these never commit themselves.

Stock commits are batch handlers: everything the consumer took from the broker at once is decided in
one transaction that locks each product once (see stock.commit_stock)."""

from __future__ import annotations

from collections.abc import Sequence

from catalog import stock
from contracts import PaymentRefunded, PaymentSucceeded, StockCommitRequested
from shopkit.consumer import EventHandlers
from shopkit.uow import UnitOfWork


def on_payments_succeeded(events: Sequence[PaymentSucceeded], uow: UnitOfWork) -> None:
    stock.commit_stock(uow, events)


def on_stock_commits_requested(events: Sequence[StockCommitRequested], uow: UnitOfWork) -> None:
    # The orders sweeper re-driving a paid order: the same decision as its PaymentSucceeded gets.
    stock.commit_stock(uow, events)


def on_payment_refunded(event: PaymentRefunded, uow: UnitOfWork) -> None:
    stock.release_stock(uow, event)


HANDLERS = EventHandlers()
HANDLERS.add_batch(PaymentSucceeded, on_payments_succeeded, name="payment-succeeded")
HANDLERS.add_batch(StockCommitRequested, on_stock_commits_requested, name="stock-commit-requested")
HANDLERS.add(PaymentRefunded, on_payment_refunded, name="payment-refunded")
