"""Batched consumption: a batch of delivered events is applied in one transaction with one inbox insert;
a poison message in it is isolated (the rest commit, it alone is retried and dead-lettered); a batch
redelivered after a crash between commit and ack changes nothing; batch handlers see their events in
arrival order and answer each with the right causation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select

from contracts import Envelope, OrderCancelled, OrderConfirmed, new_envelope
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.consumer import EventDispatcher, EventHandlers, Outcome
from shopkit.db import Database
from shopkit.inbox import inbox
from shopkit.outbox import outbox
from shopkit.uow import UnitOfWork

from .conftest import RETRY_DELAYS, applied, cancelled, handlers_for, on_order_cancelled
from .test_outbox_relay import wait_until

pytestmark = pytest.mark.integration


class StatementLog:
    """The SQL a database receives while the block runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements: list[str] = []
        self.commits = 0

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def __enter__(self) -> StatementLog:
        event.listen(self.db.engine, "before_cursor_execute", self._statement)
        event.listen(self.db.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.db.engine, "before_cursor_execute", self._statement)
        event.remove(self.db.engine, "commit", self._commit)

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.statements if s.lstrip().upper().startswith(prefix.upper()))


def envelopes(count: int, reason: str = "test") -> list[Envelope]:
    return [new_envelope(cancelled(reason), producer="orders", correlation_id=uuid.uuid4()) for _ in range(count)]


def inbox_ids(db: Database) -> set[uuid.UUID]:
    with db.engine.connect() as connection:
        return set(connection.execute(select(inbox.c.event_id)).scalars())


def test_a_batch_is_one_transaction_with_one_inbox_insert(orders_db: Database) -> None:
    dispatcher = EventDispatcher(orders_db, handlers_for(on_order_cancelled))
    batch = envelopes(20)
    with StatementLog(orders_db) as log:
        assert dispatcher.handle_batch(batch) == [None] * 20
    assert log.count("INSERT INTO inbox") == 1
    assert log.commits == 1
    assert applied(orders_db) == 20
    assert inbox_ids(orders_db) == {e.id for e in batch}


@pytest.mark.parametrize("database", ["orders_db", "sqlite_db"])
def test_a_poison_message_is_isolated_and_the_rest_of_its_batch_commits(
    database: str, request: pytest.FixtureRequest
) -> None:
    db: Database = request.getfixturevalue(database)

    def fails_on_poison(event: OrderCancelled, uow: UnitOfWork) -> None:
        on_order_cancelled(event, uow)
        if event.reason == "poison":
            raise RuntimeError("this order cannot be handled")

    dispatcher = EventDispatcher(db, handlers_for(fails_on_poison))
    batch = envelopes(3) + envelopes(1, "poison") + envelopes(3)
    outcomes = dispatcher.handle_batch(batch)

    assert [type(o).__name__ if o else None for o in outcomes] == [None] * 3 + ["RuntimeError"] + [None] * 3
    assert applied(db) == 6  # the poison's own write was rolled back with it
    assert inbox_ids(db) == {e.id for i, e in enumerate(batch) if i != 3}
    # Its retry sees it as new (nothing recorded), the others as done.
    assert dispatcher.handle_batch(batch)[3] is not None
    assert applied(db) == 6


def test_a_redelivered_batch_and_duplicates_within_a_batch_change_nothing(orders_db: Database) -> None:
    dispatcher = EventDispatcher(orders_db, handlers_for(on_order_cancelled))
    batch = envelopes(5)
    assert dispatcher.handle_batch([*batch, batch[0], batch[2]]) == [None] * 7
    assert dispatcher.handle_batch(list(reversed(batch))) == [None] * 5
    assert applied(orders_db) == 5


@pytest.mark.parametrize("database", ["orders_db", "sqlite_db"])
def test_a_batch_for_several_handlers_records_its_inbox_in_one_statement_per_handler_and_event(
    database: str, request: pytest.FixtureRequest
) -> None:
    db: Database = request.getfixturevalue(database)
    seen: list[tuple[str, uuid.UUID]] = []
    handlers = EventHandlers()
    handlers.add(OrderCancelled, on_order_cancelled, name="order-cancelled")
    handlers.add(OrderCancelled, lambda e, uow: seen.append(("audit", e.order_id)), name="order-cancelled-audit")
    handlers.add_batch(OrderConfirmed, lambda es, uow: seen.extend(("confirmed", e.order_id) for e in es), name="conf")
    cancellations = envelopes(3)
    confirmations = [
        new_envelope(
            OrderConfirmed(order_id=uuid.uuid4(), user_id=uuid.uuid4(), total_amount="1.00", currency="BDT"),
            producer="orders",
        )
        for _ in range(2)
    ]
    # One handler of the first cancellation handled it already (a redelivery after a partial failure).
    with db.engine.begin() as connection:
        connection.execute(
            inbox.insert().values(
                event_id=cancellations[0].id,
                handler="order-cancelled",
                event_type=OrderCancelled.TYPE,
                handled_at=datetime.now(UTC),
            )
        )
    dispatcher = EventDispatcher(db, handlers)

    with StatementLog(db) as log:
        assert dispatcher.handle_batch([*cancellations, *confirmations]) == [None] * 5
    assert log.count("INSERT INTO inbox") == 1  # was one per handler
    assert applied(db) == 2  # the first cancellation's own handler had handled it
    assert Counter(kind for kind, _ in seen) == {"audit": 3, "confirmed": 2}

    assert dispatcher.handle_batch([*confirmations, *cancellations]) == [None] * 5  # redelivered
    assert applied(db) == 2 and len(seen) == 5


def test_a_batch_handler_gets_its_events_in_arrival_order_and_answers_each_with_its_causation(
    orders_db: Database,
) -> None:
    seen: list[list[uuid.UUID]] = []

    def confirm_all(events: Sequence[OrderCancelled], uow: UnitOfWork) -> None:
        seen.append([e.order_id for e in events])
        for cancellation in events:
            uow.emit(
                OrderConfirmed(
                    order_id=cancellation.order_id, user_id=cancellation.user_id, total_amount="1.00", currency="BDT"
                ),
                caused_by=cancellation,
            )

    handlers = EventHandlers()
    handlers.add_batch(OrderCancelled, confirm_all, name="confirm-all")
    batch = envelopes(4)
    assert EventDispatcher(orders_db, handlers).handle_batch(batch) == [None] * 4

    arrival = [uuid.UUID(e.data["order_id"]) for e in batch]
    assert seen == [arrival]
    with orders_db.engine.connect() as connection:
        emitted = [Envelope.model_validate(row) for row in connection.execute(select(outbox.c.envelope)).scalars()]
    causes = {e.id: e for e in batch}
    assert len(emitted) == 4
    for answer in emitted:
        cause = causes[uuid.UUID(answer.causation_id or "")]
        assert answer.data["order_id"] == cause.data["order_id"]
        assert answer.correlation_id == cause.correlation_id


def test_handlers_are_registered_under_valid_unique_names_for_contract_events() -> None:
    handlers = EventHandlers()
    handlers.add(OrderCancelled, on_order_cancelled, name="order-cancelled")
    with pytest.raises(ValueError, match="two handlers"):
        handlers.add(OrderCancelled, on_order_cancelled, name="order-cancelled")
    for bad in ("", "Orders.Handler", "has space", "x" * 101, "orders.handlers.on_x()"):
        with pytest.raises(ValueError, match="bad handler name"):
            handlers.add(OrderCancelled, on_order_cancelled, name=bad)

    class NotAContract(OrderCancelled):
        TYPE = "OrderCancelled"

    with pytest.raises(ValueError, match="not an event of libs/contracts"):
        handlers.add(NotAContract, on_order_cancelled, name="impostor")
    assert handlers.event_types == ["OrderCancelled"]


async def test_over_rabbitmq_a_poison_message_in_a_batch_is_retried_and_dead_lettered_alone(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    queue = f"{bus_namespace}orders"
    attempts: Counter[uuid.UUID] = Counter()
    batch_sizes: list[int] = []

    def fails_on_poison(event: OrderCancelled, uow: UnitOfWork) -> None:
        attempts[event.order_id] += 1
        if event.reason == "poison":
            raise RuntimeError("this order cannot be handled")
        on_order_cancelled(event, uow)

    dispatcher = EventDispatcher(orders_db, handlers_for(fails_on_poison))

    async def measured(batch: Sequence[Envelope]) -> list[Outcome]:
        batch_sizes.append(len(batch))
        return await dispatcher(batch)

    # Published before anyone consumes, so the first deliveries arrive together as batches.
    await rabbit.declare(rabbit._publish_channel, queue, ["OrderCancelled"])  # type: ignore[arg-type]
    poison = envelopes(1, "poison")
    good = envelopes(29)
    assert await rabbit.publish([*good[:10], *poison, *good[10:]]) == {}
    await rabbit.subscribe(queue, ["OrderCancelled"], measured)

    await wait_until(lambda: applied(orders_db) == 29)
    deadline = time.monotonic() + 15
    while await rabbit.dead_letter_count(queue) < 1:
        assert time.monotonic() < deadline, "the poison message never reached the dead-letter queue"
        await asyncio.sleep(0.1)
    await asyncio.sleep(sum(RETRY_DELAYS) + 0.5)

    assert max(batch_sizes) > 1, batch_sizes  # batches did form
    poison_order = uuid.UUID(poison[0].data["order_id"])
    # Once in its batch, once alone when the batch was isolated, then once per retry.
    assert attempts[poison_order] == 2 + len(RETRY_DELAYS)
    assert await rabbit.dead_letter_count(queue) == 1
    assert all(applied(orders_db, uuid.UUID(e.data["order_id"])) == 1 for e in good)


async def test_over_rabbitmq_a_crash_between_commit_and_ack_redelivers_the_batch_and_changes_nothing(
    orders_db: Database, amqp_url: str, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    queue = f"{bus_namespace}orders"
    committed = asyncio.Event()
    never = asyncio.Event()
    deliveries: Counter[uuid.UUID] = Counter()
    dispatcher = EventDispatcher(orders_db, handlers_for(on_order_cancelled))

    async def commits_then_dies(batch: Sequence[Envelope]) -> list[Outcome]:
        for envelope in batch:
            deliveries[envelope.id] += 1
        outcomes = await dispatcher(batch)
        committed.set()
        await never.wait()  # the process dies after the commit, before any ack
        return outcomes

    await rabbit.declare(rabbit._publish_channel, queue, ["OrderCancelled"])  # type: ignore[arg-type]
    batch = envelopes(10)
    assert await rabbit.publish(batch) == {}
    dying = RabbitMQTransport(amqp_url, retry_delays=RETRY_DELAYS, exchange=rabbit.exchange_name)
    await dying.connect()
    await dying.subscribe(queue, ["OrderCancelled"], commits_then_dies)
    await asyncio.wait_for(committed.wait(), 15)
    assert applied(orders_db) >= 1
    await dying.close()  # unacked: the broker gives the batch to the next consumer

    async def counting(redelivered: Sequence[Envelope]) -> list[Outcome]:
        for envelope in redelivered:
            deliveries[envelope.id] += 1
        return await dispatcher(redelivered)

    await rabbit.subscribe(queue, ["OrderCancelled"], counting)
    await wait_until(lambda: applied(orders_db) == 10 and sum(deliveries.values()) >= 11)
    await asyncio.sleep(0.5)
    assert applied(orders_db) == 10
    assert all(applied(orders_db, uuid.UUID(e.data["order_id"])) == 1 for e in batch)
    assert any(count > 1 for count in deliveries.values())  # some were delivered twice, applied once
