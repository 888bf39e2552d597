"""PaymentRefunded puts committed stock back once, and only for the payment that committed it; the
same saga runs on SQLite (all-in-one mode) through the same handlers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog.app import MIGRATIONS
from catalog.handlers import HANDLERS
from catalog.models import Product, StockMovement
from catalog.settings import CatalogSettings
from contracts import Envelope, PaymentRefunded, new_envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.migrate import upgrade
from shopkit.outbox import outbox

pytestmark = pytest.mark.integration

SAGA_ANSWERS = {"StockCommitted", "StockRejected"}


def refunded(payment: Envelope, *, payment_id: uuid.UUID | None = None) -> Envelope:
    data = PaymentRefunded(
        payment_id=payment_id or payment.data["payment_id"],
        order_id=payment.data["order_id"],
        provider="stripe",
        amount=Decimal(payment.data["amount"]),
        currency="BDT",
        reason="stock rejected elsewhere",
    )
    return new_envelope(data, producer="payments", correlation_id=payment.data["order_id"])


def state(db: Database, product_id: uuid.UUID) -> tuple[int, list[tuple[str, int]]]:
    """The product's stock and its ledger (cause, delta) in any order, sorted."""
    with db.engine.connect() as connection:
        stock = connection.execute(select(Product.stock).where(Product.id == product_id)).scalar_one()
        ledger = connection.execute(
            select(StockMovement.cause, StockMovement.delta).where(StockMovement.product_id == product_id)
        ).all()
        ledger_sum = connection.execute(
            select(func.sum(StockMovement.delta)).where(StockMovement.product_id == product_id)
        ).scalar_one()
    assert ledger_sum == stock
    return stock, sorted((cause, delta) for cause, delta in ledger)


def emitted_types(db: Database) -> list[str]:
    """The saga answers the catalog put in its outbox (ProductChanged has tests of its own)."""
    with db.engine.connect() as connection:
        return sorted(
            row.event_type for row in connection.execute(select(outbox.c.event_type)) if row.event_type in SAGA_ANSWERS
        )


def test_refund_of_the_paying_payment_releases_once_even_when_delivered_concurrently(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=5)
    payment = payment_succeeded({product: 2})
    pg_dispatcher.handle(payment)
    assert state(pg_db, product)[0] == 3

    # The same refund, redelivered under new envelope ids at once (e.g. admin refund and a retry).
    refunds = [refunded(payment) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(pg_dispatcher.handle, r) for r in refunds]:
            future.result()

    stock, ledger = state(pg_db, product)
    assert stock == 5
    assert ledger == [("initial", 5), ("order_commit", -2), ("release", 2)]
    with pg_db.engine.connect() as connection:
        order_ids = set(
            connection.execute(select(StockMovement.order_id).where(StockMovement.cause == "release")).scalars()
        )
    assert order_ids == {uuid.UUID(payment.data["order_id"])}
    # After the release, a re-driven PaymentSucceeded still answers the recorded outcome, sells nothing.
    pg_dispatcher.handle(
        payment_succeeded(
            {product: 2}, order_id=payment.data["order_id"], payment_id=payment.data["payment_id"], producer="orders"
        )
    )
    assert state(pg_db, product)[0] == 5


def test_refund_of_another_payment_of_the_order_releases_nothing(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=5)
    payment = payment_succeeded({product: 2})
    pg_dispatcher.handle(payment)
    pg_dispatcher.handle(refunded(payment, payment_id=uuid.uuid4()))
    assert state(pg_db, product) == (3, [("initial", 5), ("order_commit", -2)])


def test_refund_after_a_rejection_or_for_an_unknown_order_releases_nothing(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=1)
    rejected = payment_succeeded({product: 2})
    pg_dispatcher.handle(rejected)
    pg_dispatcher.handle(refunded(rejected))
    pg_dispatcher.handle(refunded(payment_succeeded({product: 1})))  # never seen by the catalog
    assert state(pg_db, product) == (1, [("initial", 1)])
    assert emitted_types(pg_db) == ["StockRejected"]


def test_commit_and_release_on_sqlite(
    sqlite_settings: CatalogSettings,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    db = Database(sqlite_settings.service_database_url("catalog"), service="catalog")
    upgrade(db, MIGRATIONS)
    dispatcher = EventDispatcher(db, HANDLERS)
    product = seed_product(db, stock=10)
    payments = [payment_succeeded({product: 1}) for _ in range(14)]
    # BEGIN IMMEDIATE serialises the writers: still exactly ten sold.
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(dispatcher.handle, p) for p in payments]:
            future.result()
    dispatcher.handle(payments[0])
    assert state(db, product)[0] == 0
    assert emitted_types(db) == ["StockCommitted"] * 10 + ["StockRejected"] * 4

    committed = _committed_payments(db)
    dispatcher.handle(refunded(committed[0]))
    dispatcher.handle(refunded(committed[0]))
    stock, ledger = state(db, product)
    assert stock == 1 and ledger.count(("release", 1)) == 1
    db.dispose()


def _committed_payments(db: Database) -> list[Envelope]:
    with db.engine.connect() as connection:
        rows: list[Any] = (
            connection.execute(select(outbox.c.envelope).where(outbox.c.event_type == "StockCommitted")).scalars().all()
        )
    return [
        new_envelope(_payment_data(row["data"]), producer="payments", correlation_id=row["data"]["order_id"])
        for row in rows
    ]


def _payment_data(data: dict[str, Any]) -> Any:
    from contracts import PaymentSucceeded

    return PaymentSucceeded(
        payment_id=data["payment_id"],
        order_id=data["order_id"],
        provider="stripe",
        amount=Decimal("100.00"),
        currency="BDT",
        items=data["items"],
    )


def refund_v2(payment: Envelope, *, amount: str, restock: bool, fully_refunded: bool, refunded_so_far: str) -> Envelope:
    data = PaymentRefunded(
        payment_id=payment.data["payment_id"],
        order_id=payment.data["order_id"],
        provider="stripe",
        amount=Decimal(amount),
        currency="BDT",
        reason="partial refund",
        refunded_amount=Decimal(refunded_so_far),
        fully_refunded=fully_refunded,
        restock=restock,
    )
    return new_envelope(data, producer="payments", correlation_id=payment.data["order_id"])


def test_a_partial_refund_with_restock_releases_the_committed_lines_once(
    any_db: Database, seed_product: Callable[..., uuid.UUID], payment_succeeded: Callable[..., Envelope]
) -> None:
    dispatcher = EventDispatcher(any_db, HANDLERS)
    tea, rice = seed_product(any_db, stock=10), seed_product(any_db, stock=4)
    payment = payment_succeeded({tea: 3, rice: 2})  # 500.00 in all
    dispatcher.handle(payment)

    first = refund_v2(payment, amount="100.00", restock=True, fully_refunded=False, refunded_so_far="100.00")
    rest = refund_v2(payment, amount="400.00", restock=True, fully_refunded=True, refunded_so_far="500.00")
    for envelope in (
        first,
        first,
        rest,
        refund_v2(payment, amount="0.01", restock=True, fully_refunded=True, refunded_so_far="500.00"),
    ):
        dispatcher.handle(envelope)

    assert state(any_db, tea) == (10, [("initial", 10), ("order_commit", -3), ("release", 3)])
    assert state(any_db, rice) == (4, [("initial", 4), ("order_commit", -2), ("release", 2)])


def test_a_refund_without_restock_leaves_the_stock_sold_until_one_says_restock(
    any_db: Database, seed_product: Callable[..., uuid.UUID], payment_succeeded: Callable[..., Envelope]
) -> None:
    dispatcher = EventDispatcher(any_db, HANDLERS)
    product = seed_product(any_db, stock=6)
    payment = payment_succeeded({product: 2})
    dispatcher.handle(payment)

    # A goodwill refund of a delivered order: the goods stay with the customer.
    dispatcher.handle(refund_v2(payment, amount="50.00", restock=False, fully_refunded=False, refunded_so_far="50.00"))
    assert state(any_db, product) == (4, [("initial", 6), ("order_commit", -2)])
    # Then the goods come back (a return): the rest is refunded and the stock goes back on the shelf.
    dispatcher.handle(refund_v2(payment, amount="150.00", restock=True, fully_refunded=True, refunded_so_far="200.00"))
    assert state(any_db, product) == (6, [("initial", 6), ("order_commit", -2), ("release", 2)])


def test_a_v1_refund_event_reads_as_a_full_refund_that_restocks(
    any_db: Database, seed_product: Callable[..., uuid.UUID], payment_succeeded: Callable[..., Envelope]
) -> None:
    dispatcher = EventDispatcher(any_db, HANDLERS)
    product = seed_product(any_db, stock=3)
    payment = payment_succeeded({product: 3})
    dispatcher.handle(payment)
    # What a payments service of the previous release put on the bus: no refunded_amount, no restock.
    v1 = Envelope(
        type="PaymentRefunded",
        version=1,
        producer="payments",
        correlation_id=str(payment.data["order_id"]),
        data={
            "payment_id": payment.data["payment_id"],
            "order_id": payment.data["order_id"],
            "provider": "stripe",
            "amount": payment.data["amount"],
            "currency": "BDT",
            "reason": "stock rejected",
        },
    )
    dispatcher.handle(v1)
    dispatcher.handle(v1)
    assert state(any_db, product) == (3, [("initial", 3), ("order_commit", -3), ("release", 3)])
