"""Stock commits a batch at a time (what the consumer took from the broker at once, in one transaction):
orders decided in arrival order against the stock the earlier ones left, all or nothing each; orders
decided before answered again with their recorded answer; redelivered batches changing nothing; two
batches racing on the same products neither deadlocking nor overselling. On real PostgreSQL, and the
batch path on SQLite too (all-in-one mode)."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog.handlers import HANDLERS
from catalog.models import Product, StockDecision, StockMovement
from contracts import Envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.outbox import outbox

pytestmark = pytest.mark.integration

ANSWERS = ("StockCommitted", "StockRejected")


@pytest.fixture
def db(any_db: Database) -> Database:
    return any_db


def outbox_of(db: Database, *types: str) -> list[dict[str, Any]]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(outbox.c.envelope).where(outbox.c.event_type.in_(types)).order_by(outbox.c.created_at)
        )
        return [row.envelope for row in rows]


def answers_by_cause(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every saga answer, keyed by the id of the envelope it answers."""
    answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for answer in outbox_of(db, *ANSWERS):
        answers[answer["causation_id"]].append(answer)
    return answers


def answer_to(db: Database, envelope: Envelope) -> dict[str, Any]:
    [answer] = answers_by_cause(db)[str(envelope.id)]
    assert answer["correlation_id"] == str(envelope.data["order_id"])
    assert answer["data"]["order_id"] == str(envelope.data["order_id"])
    return answer


def stock_of(db: Database, product_id: uuid.UUID) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(select(Product.stock).where(Product.id == product_id)).scalar_one())


def ledger(db: Database, product_id: uuid.UUID) -> list[tuple[str, int, int, str | None]]:
    """(cause, delta, stock_after, order_id) of a product's movements, in the order stock went down."""
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(StockMovement.cause, StockMovement.delta, StockMovement.stock_after, StockMovement.order_id)
            .where(StockMovement.product_id == product_id)
            .order_by(StockMovement.stock_after.desc())
        ).all()
    return [(cause, delta, after, str(order) if order else None) for cause, delta, after, order in rows]


def assert_ledger_consistent(db: Database) -> None:
    with db.engine.connect() as connection:
        sums = dict(
            connection.execute(
                select(StockMovement.product_id, func.sum(StockMovement.delta)).group_by(StockMovement.product_id)
            ).all()
        )
        for product_id, stock in connection.execute(select(Product.id, Product.stock)):
            assert stock >= 0
            assert sums.get(product_id, 0) == stock, f"ledger of {product_id} does not sum to its stock"


def handle(dispatcher: EventDispatcher, batch: list[Envelope]) -> None:
    outcomes = dispatcher.handle_batch(batch)
    assert outcomes == [None] * len(batch)


def test_a_hot_product_running_out_mid_batch_commits_the_first_orders_and_rejects_the_later_ones(
    db: Database, seed_product: Callable[..., uuid.UUID], payment_succeeded: Callable[..., Envelope]
) -> None:
    dispatcher = EventDispatcher(db, HANDLERS)
    hot = seed_product(db, stock=5)
    batch = [payment_succeeded({hot: quantity}) for quantity in (2, 1, 2, 1, 3)]

    handle(dispatcher, batch)

    assert [answer_to(db, e)["type"] for e in batch] == ["StockCommitted"] * 3 + ["StockRejected"] * 2
    assert [answer_to(db, e)["data"]["shortages"] for e in batch[3:]] == [
        [{"product_id": str(hot), "requested": 1, "available": 0}],
        [{"product_id": str(hot), "requested": 3, "available": 0}],
    ]
    assert answer_to(db, batch[0])["data"]["items"][0]["quantity"] == 2
    assert stock_of(db, hot) == 0
    # One ledger row per committed order, each with the stock it left, in arrival order.
    orders = [str(e.data["order_id"]) for e in batch]
    assert ledger(db, hot) == [
        ("initial", 5, 5, None),
        ("order_commit", -2, 3, orders[0]),
        ("order_commit", -1, 2, orders[1]),
        ("order_commit", -2, 0, orders[2]),
    ]
    assert_ledger_consistent(db)
    with db.engine.connect() as connection:
        outcomes = {str(o): v for o, v in connection.execute(select(StockDecision.order_id, StockDecision.outcome))}
    assert [outcomes[e.data["order_id"]] for e in batch] == ["committed"] * 3 + ["rejected"] * 2
    # The batch moved the product once: one ProductChanged with its final stock and next version.
    [changed] = outbox_of(db, "ProductChanged")
    assert changed["data"]["product_id"] == str(hot)
    assert (changed["data"]["stock"], changed["data"]["version"]) == (0, 2)
    assert changed["correlation_id"] == str(hot)


def test_an_order_rejected_mid_batch_leaves_its_units_to_a_later_smaller_order(
    db: Database, seed_product: Callable[..., uuid.UUID], payment_succeeded: Callable[..., Envelope]
) -> None:
    dispatcher = EventDispatcher(db, HANDLERS)
    hot, other = seed_product(db, stock=5), seed_product(db, stock=10)
    batch = [
        payment_succeeded({hot: 2}),
        payment_succeeded({other: 4, hot: 4}),  # short on hot: takes nothing from other either
        payment_succeeded({hot: 3, other: 1}),
    ]

    handle(dispatcher, batch)

    assert [answer_to(db, e)["type"] for e in batch] == ["StockCommitted", "StockRejected", "StockCommitted"]
    assert answer_to(db, batch[1])["data"]["shortages"] == [{"product_id": str(hot), "requested": 4, "available": 3}]
    assert (stock_of(db, hot), stock_of(db, other)) == (0, 9)
    assert_ledger_consistent(db)
    assert sorted((e["data"]["sku"], e["data"]["stock"]) for e in outbox_of(db, "ProductChanged")) == sorted(
        [(sku_of(db, hot), 0), (sku_of(db, other), 9)]
    )


def sku_of(db: Database, product_id: uuid.UUID) -> str:
    with db.engine.connect() as connection:
        return str(connection.execute(select(Product.sku).where(Product.id == product_id)).scalar_one())


def test_a_batch_mixing_new_and_already_decided_orders_answers_the_decided_ones_as_recorded(
    db: Database,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
    stock_commit_requested: Callable[..., Envelope],
) -> None:
    dispatcher = EventDispatcher(db, HANDLERS)
    hot = seed_product(db, stock=3)
    committed, rejected = payment_succeeded({hot: 2}), payment_succeeded({hot: 2})
    handle(dispatcher, [committed])
    handle(dispatcher, [rejected])
    assert stock_of(db, hot) == 1

    def again(first: Envelope) -> Envelope:
        order, payment = first.data["order_id"], first.data["payment_id"]
        return payment_succeeded({hot: 2}, order_id=order, payment_id=payment, producer="orders")

    fresh, too_late = payment_succeeded({hot: 1}), payment_succeeded({hot: 1})
    redrive = stock_commit_requested(
        {hot: 2}, order_id=committed.data["order_id"], payment_id=committed.data["payment_id"]
    )
    batch = [again(rejected), fresh, redrive, too_late, again(committed)]
    handle(dispatcher, batch)

    assert [answer_to(db, e)["type"] for e in batch] == [
        "StockRejected",
        "StockCommitted",
        "StockCommitted",
        "StockRejected",
        "StockCommitted",
    ]
    # Decided orders get the answer recorded for them (the shortage as it was then), not a new decision.
    assert answer_to(db, batch[0])["data"] == answer_to(db, rejected)["data"]
    assert answer_to(db, batch[2])["data"] == answer_to(db, committed)["data"]
    assert answer_to(db, batch[4])["data"] == answer_to(db, committed)["data"]
    assert answer_to(db, too_late)["data"]["shortages"] == [{"product_id": str(hot), "requested": 1, "available": 0}]
    assert stock_of(db, hot) == 0
    assert [(cause, delta) for cause, delta, _, _ in ledger(db, hot)] == [
        ("initial", 3),
        ("order_commit", -2),
        ("order_commit", -1),
    ]
    assert_ledger_consistent(db)


def test_one_order_twice_in_a_batch_is_decided_once_and_answered_twice(
    db: Database,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
    stock_commit_requested: Callable[..., Envelope],
) -> None:
    dispatcher = EventDispatcher(db, HANDLERS)
    product = seed_product(db, stock=10)
    first = payment_succeeded({product: 4})
    order, payment = first.data["order_id"], first.data["payment_id"]
    # The payment delivered twice under new envelope ids, and the sweeper's re-drive, all in one batch.
    batch = [
        first,
        payment_succeeded({product: 4}, order_id=order, payment_id=payment, producer="orders"),
        stock_commit_requested({product: 4}, order_id=order, payment_id=payment),
    ]
    handle(dispatcher, batch)

    assert [answer_to(db, e)["type"] for e in batch] == ["StockCommitted"] * 3
    assert stock_of(db, product) == 6
    assert [cause for cause, *_ in ledger(db, product)] == ["initial", "order_commit"]


def test_a_redelivered_batch_changes_nothing_and_a_redriven_one_only_answers_again(
    db: Database, seed_product: Callable[..., uuid.UUID], payment_succeeded: Callable[..., Envelope]
) -> None:
    dispatcher = EventDispatcher(db, HANDLERS)
    product = seed_product(db, stock=3)
    batch = [payment_succeeded({product: 1}) for _ in range(5)]
    handle(dispatcher, batch)
    before = (stock_of(db, product), ledger(db, product), len(outbox_of(db, *ANSWERS, "ProductChanged")))

    handle(dispatcher, batch)  # the broker redelivers the same messages: the inbox knows them
    assert (stock_of(db, product), ledger(db, product), len(outbox_of(db, *ANSWERS, "ProductChanged"))) == before

    redriven = [
        payment_succeeded({product: 1}, order_id=e.data["order_id"], payment_id=e.data["payment_id"], producer="orders")
        for e in batch
    ]
    handle(dispatcher, redriven)
    assert [answer_to(db, e)["type"] for e in redriven] == [answer_to(db, e)["type"] for e in batch]
    assert [answer_to(db, e)["type"] for e in batch] == ["StockCommitted"] * 3 + ["StockRejected"] * 2
    assert (stock_of(db, product), ledger(db, product)) == before[:2]
    # Answering again moves no stock, so it tells nobody that a product changed.
    assert len(outbox_of(db, "ProductChanged")) == 1


def test_a_stock_commit_request_is_decided_like_the_payment_it_stands_for(
    db: Database,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
    stock_commit_requested: Callable[..., Envelope],
) -> None:
    dispatcher = EventDispatcher(db, HANDLERS)
    product = seed_product(db, stock=2)
    order, payment = uuid.uuid4(), uuid.uuid4()
    request = stock_commit_requested({product: 2}, order_id=order, payment_id=payment)
    handle(dispatcher, [request])
    late_payment = payment_succeeded({product: 2}, order_id=order, payment_id=payment)
    handle(dispatcher, [late_payment])

    assert answer_to(db, request)["type"] == "StockCommitted"
    assert answer_to(db, request)["data"]["payment_id"] == str(payment)
    assert answer_to(db, late_payment)["data"] == answer_to(db, request)["data"]
    assert stock_of(db, product) == 0
    assert_ledger_consistent(db)


def test_two_batches_racing_on_the_same_products_neither_deadlock_nor_oversell(
    pg_db: Database,
    seed_product: Callable[..., uuid.UUID],
    payment_succeeded: Callable[..., Envelope],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = EventDispatcher(pg_db, HANDLERS)
    products = [seed_product(pg_db, stock=40) for _ in range(3)]
    rng = random.Random(7)

    def order() -> Envelope:
        chosen = rng.sample(products, rng.randint(1, 3))  # lines in random order
        return payment_succeeded({pid: rng.randint(1, 3) for pid in chosen})

    orders = [order() for _ in range(160)]
    # Both consumers also get some of the same orders (a redelivery racing the first delivery).
    shared = orders[::8]
    lanes = [orders[0::2] + shared[::2], orders[1::2] + shared[1::2]]
    for lane in lanes:
        rng.shuffle(lane)
    start = threading.Barrier(2)
    failures: list[BaseException | None] = []

    def consume(lane: list[Envelope]) -> None:
        start.wait()
        for i in range(0, len(lane), 10):
            failures.extend(dispatcher.handle_batch(lane[i : i + 10]))

    with caplog.at_level(logging.WARNING, logger="shopkit.consumer"):
        threads = [threading.Thread(target=consume, args=(lane,)) for lane in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == [None] * sum(len(lane) for lane in lanes)
    # No batch failed and was re-applied event by event (a deadlock would show here).
    assert not [r for r in caplog.records if "batch failed" in r.getMessage()]

    answers = answers_by_cause(pg_db)
    by_order: dict[str, set[str]] = defaultdict(set)
    for envelope in {e.id: e for lane in lanes for e in lane}.values():
        [answer] = answers[str(envelope.id)]
        by_order[str(envelope.data["order_id"])].add(answer["type"])
    assert len(by_order) == len(orders) and all(len(types) == 1 for types in by_order.values())
    committed = {order for order, types in by_order.items() if types == {"StockCommitted"}}
    assert 0 < len(committed) < len(orders)  # the stock ran out during the race

    with pg_db.engine.connect() as connection:
        moves = connection.execute(
            select(StockMovement.order_id, StockMovement.product_id, StockMovement.delta).where(
                StockMovement.cause == "order_commit"
            )
        ).all()
        decisions = Counter(connection.execute(select(StockDecision.outcome)).scalars())
    assert decisions == {"committed": len(committed), "rejected": len(orders) - len(committed)}
    # All or nothing: a committed order has exactly its lines in the ledger, a rejected one none.
    wanted = {
        str(e.data["order_id"]): {line["product_id"]: line["quantity"] for line in e.data["items"]} for e in orders
    }
    taken: dict[str, dict[str, int]] = defaultdict(dict)
    for order_id, product_id, delta in moves:
        taken[str(order_id)][str(product_id)] = -delta
    assert taken == {order: wanted[order] for order in committed}
    # Units sold + units left = units received.
    for product in products:
        sold = sum(lines.get(str(product), 0) for lines in taken.values())
        assert sold + stock_of(pg_db, product) == 40
    assert_ledger_consistent(pg_db)
