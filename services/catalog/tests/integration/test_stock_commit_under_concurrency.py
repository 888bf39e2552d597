"""PaymentSucceeded → stock commit on real PostgreSQL, driven through the kit's EventDispatcher (so the
inbox path runs) from many threads and connections at once: no oversell, all or nothing per order,
no deadlock, one decrement per order however often its payment is delivered."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog.models import Product, StockDecision, StockMovement
from contracts import Envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.outbox import outbox
from shopkit.uow import unit_of_work

pytestmark = pytest.mark.integration


def emitted(db: Database) -> list[dict[str, Any]]:
    """Every saga answer (StockCommitted, StockRejected) the catalog put in its outbox; the
    ProductChanged events it emits beside them are checked in test_product_changed.py."""
    with db.engine.connect() as connection:
        return [
            row.envelope
            for row in connection.execute(
                select(outbox.c.envelope).where(outbox.c.event_type.in_(["StockCommitted", "StockRejected"]))
            )
        ]


def stock_of(db: Database, product_id: uuid.UUID) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(select(Product.stock).where(Product.id == product_id)).scalar_one())


def assert_ledger_consistent(db: Database) -> None:
    """For every product the ledger's deltas sum to its stock, and no stock is negative."""
    with db.engine.connect() as connection:
        sums = dict(
            connection.execute(
                select(StockMovement.product_id, func.sum(StockMovement.delta)).group_by(StockMovement.product_id)
            ).all()
        )
        for product_id, stock in connection.execute(select(Product.id, Product.stock)):
            assert stock >= 0
            assert sums.get(product_id, 0) == stock, f"ledger of {product_id} does not sum to its stock"


def run_all(dispatcher: EventDispatcher, envelopes: list[Envelope], threads: int = 32) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(dispatcher.handle, envelope) for envelope in envelopes]:
            future.result()  # re-raises a deadlock or any other failure


def test_two_hundred_payments_for_fifty_units_commit_exactly_fifty(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=50)
    envelopes = [payment_succeeded({product: 1}) for _ in range(200)]

    run_all(pg_dispatcher, envelopes)

    events = Counter(envelope["type"] for envelope in emitted(pg_db))
    assert events == {"StockCommitted": 50, "StockRejected": 150}
    assert stock_of(pg_db, product) == 0
    assert_ledger_consistent(pg_db)
    with pg_db.engine.connect() as connection:
        commits = connection.execute(
            select(func.count()).select_from(StockMovement).where(StockMovement.cause == "order_commit")
        ).scalar_one()
        decisions = dict(
            connection.execute(select(StockDecision.outcome, func.count()).group_by(StockDecision.outcome)).all()
        )
    assert commits == 50
    assert decisions == {"committed": 50, "rejected": 150}
    rejected = [e for e in emitted(pg_db) if e["type"] == "StockRejected"]
    assert all(
        e["data"]["shortages"] == [{"product_id": str(product), "requested": 1, "available": 0}] for e in rejected
    )
    # Each answer belongs to the order it answers (correlation) and the payment that caused it.
    by_id = {e.id: e for e in envelopes}
    for answer in emitted(pg_db):
        cause = by_id[uuid.UUID(answer["causation_id"])]
        assert answer["correlation_id"] == str(cause.data["order_id"])
        assert answer["data"]["payment_id"] == cause.data["payment_id"]


def test_orders_locking_shared_products_in_opposite_orders_never_deadlock_or_half_commit(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    a, b, c = (seed_product(pg_db, stock=60) for _ in range(3))
    envelopes = []
    for i in range(120):
        # Lines listed in opposite orders; any locking in line order would deadlock here.
        lines = {a: 1, b: 2, c: 1} if i % 2 else {c: 1, b: 2, a: 1}
        envelopes.append(payment_succeeded(lines))

    run_all(pg_dispatcher, envelopes)

    answers = Counter(e["type"] for e in emitted(pg_db))
    # b runs out first: 30 orders of 2 units each.
    assert answers == {"StockCommitted": 30, "StockRejected": 90}
    assert (stock_of(pg_db, a), stock_of(pg_db, b), stock_of(pg_db, c)) == (30, 0, 30)
    assert_ledger_consistent(pg_db)
    with pg_db.engine.connect() as connection:
        per_order = connection.execute(
            select(StockMovement.order_id, func.count())
            .where(StockMovement.cause == "order_commit")
            .group_by(StockMovement.order_id)
        ).all()
    # All or nothing: every committed order has exactly its three lines in the ledger.
    assert len(per_order) == 30 and all(count == 3 for _, count in per_order)


def test_multi_line_order_short_on_one_line_changes_nothing(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    plenty, scarce = seed_product(pg_db, stock=10), seed_product(pg_db, stock=1)
    archived = seed_product(pg_db, stock=5, is_active=False)
    unknown = uuid.uuid4()
    pg_dispatcher.handle(payment_succeeded({plenty: 2, scarce: 3, archived: 1, unknown: 1}))

    [answer] = emitted(pg_db)
    assert answer["type"] == "StockRejected"
    assert sorted((s["product_id"], s["requested"], s["available"]) for s in answer["data"]["shortages"]) == sorted(
        [(str(scarce), 3, 1), (str(archived), 1, 0), (str(unknown), 1, 0)]
    )
    assert (stock_of(pg_db, plenty), stock_of(pg_db, scarce), stock_of(pg_db, archived)) == (10, 1, 5)
    assert_ledger_consistent(pg_db)


def test_same_event_delivered_twice_and_concurrently_decrements_once(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=10)
    envelope = payment_succeeded({product: 3})

    run_all(pg_dispatcher, [envelope] * 8, threads=8)
    pg_dispatcher.handle(envelope)

    assert stock_of(pg_db, product) == 7
    assert [e["type"] for e in emitted(pg_db)] == ["StockCommitted"]
    assert_ledger_consistent(pg_db)


def test_redriven_payment_for_a_decided_order_answers_again_without_touching_stock(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=5)
    first = payment_succeeded({product: 2})
    # The orders sweeper re-emits the same data under new envelope ids, several at once.
    redriven = [
        payment_succeeded(
            {product: 2}, order_id=first.data["order_id"], payment_id=first.data["payment_id"], producer="orders"
        )
        for _ in range(6)
    ]
    run_all(pg_dispatcher, [first, *redriven], threads=7)

    assert stock_of(pg_db, product) == 3
    answers = emitted(pg_db)
    assert [e["type"] for e in answers] == ["StockCommitted"] * 7
    assert {e["data"]["payment_id"] for e in answers} == {str(first.data["payment_id"])}
    assert all(e["data"]["items"] == answers[0]["data"]["items"] for e in answers)
    assert_ledger_consistent(pg_db)


def test_a_rejected_order_stays_rejected_even_after_a_restock(
    pg_db: Database,
    pg_dispatcher: EventDispatcher,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
) -> None:
    product = seed_product(pg_db, stock=1)
    first = payment_succeeded({product: 2})
    pg_dispatcher.handle(first)
    with unit_of_work(pg_db) as uow:
        uow.session.get(Product, product).stock = 10  # type: ignore[union-attr]
        uow.session.add(
            StockMovement(
                id=uuid.uuid4(),
                product_id=product,
                delta=9,
                cause="adjustment",
                stock_after=10,
                created_at=uow.session.get(Product, product).created_at,
            )
        )  # type: ignore[union-attr]
        uow.commit()
    # The order was already refunded on the first answer; a re-drive must not sell it now.
    pg_dispatcher.handle(
        payment_succeeded(
            {product: 2}, order_id=first.data["order_id"], payment_id=first.data["payment_id"], producer="orders"
        )
    )

    assert [e["type"] for e in emitted(pg_db)] == ["StockRejected", "StockRejected"]
    assert stock_of(pg_db, product) == 10
