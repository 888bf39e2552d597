"""Outbox and relay on real PostgreSQL and RabbitMQ: written in the caller's transaction, published with
confirms, republished after a crash between publish and mark, never twice by two relays in one pass,
dead after repeated refusals, replayable."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

import aio_pika
import pytest
from sqlalchemy import select

from contracts import Envelope
from shopkit.bus import Outgoing
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.consumer import EventDispatcher, Outcome
from shopkit.db import Database
from shopkit.outbox import DEAD, PENDING, SENT, outbox, replay_dead
from shopkit.relay import OutboxRelay
from shopkit.uow import unit_of_work

from .conftest import applied, cancelled, handlers_for, make_kit_database, on_order_cancelled

pytestmark = pytest.mark.integration


def outbox_rows(db: Database) -> list:
    with db.engine.connect() as connection:
        return list(connection.execute(select(outbox).order_by(outbox.c.created_at)).all())


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def emit(db: Database, count: int) -> list[uuid.UUID]:
    order_ids = []
    for _ in range(count):
        with unit_of_work(db) as uow:
            event = cancelled()
            uow.emit(event)
            uow.commit()
            order_ids.append(event.order_id)
    return order_ids


class CountingDispatcher:
    """The real dispatcher, counting every delivery it is handed (duplicates included)."""

    def __init__(self, db: Database) -> None:
        self.dispatcher = EventDispatcher(db, handlers_for(on_order_cancelled))
        self.deliveries: Counter[uuid.UUID] = Counter()

    async def __call__(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        for envelope in envelopes:
            self.deliveries[envelope.id] += 1
        return await self.dispatcher(envelopes)


async def consume(rabbit: RabbitMQTransport, db: Database, queue: str) -> CountingDispatcher:
    counting = CountingDispatcher(db)
    await rabbit.subscribe(queue, ["OrderCancelled"], counting)
    return counting


def test_rolled_back_unit_of_work_leaves_no_outbox_row(orders_db: Database) -> None:
    with pytest.raises(RuntimeError), unit_of_work(orders_db) as uow:
        uow.emit(cancelled())
        uow.session.flush()
        raise RuntimeError("the use case failed after emitting")
    with unit_of_work(orders_db) as uow:
        uow.emit(cancelled())  # never committed
    assert outbox_rows(orders_db) == []

    with unit_of_work(orders_db) as uow:
        envelope = uow.emit(cancelled())
        uow.commit()
    [row] = outbox_rows(orders_db)
    assert (row.id, row.status, row.event_type) == (envelope.id, PENDING, "OrderCancelled")


async def test_relay_publishes_with_confirms_and_marks_sent(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    consumer = await consume(rabbit, orders_db, f"{bus_namespace}orders")
    order_ids = emit(orders_db, 5)

    assert await OutboxRelay(orders_db, rabbit).publish_once() == 5

    rows = outbox_rows(orders_db)
    assert [row.status for row in rows] == [SENT] * 5
    assert all(row.published_at is not None for row in rows)
    await wait_until(lambda: applied(orders_db) == 5)
    assert all(applied(orders_db, order_id) == 1 for order_id in order_ids)
    assert sorted(consumer.deliveries.values()) == [1] * 5


async def test_relay_killed_between_publish_and_mark_publishes_again_and_consumer_applies_once(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = await consume(rabbit, orders_db, f"{bus_namespace}orders")
    [order_id] = emit(orders_db, 1)
    relay = OutboxRelay(orders_db, rabbit)

    def connection_dies(*_args: object) -> None:
        raise ConnectionError("the relay's database connection died after the broker confirmed")

    monkeypatch.setattr(relay, "_mark", connection_dies)
    with pytest.raises(ConnectionError):
        await relay.publish_once()
    assert [row.status for row in outbox_rows(orders_db)] == [PENDING]
    await wait_until(lambda: applied(orders_db) == 1)

    monkeypatch.undo()
    assert await relay.publish_once() == 1
    assert [row.status for row in outbox_rows(orders_db)] == [SENT]
    await wait_until(lambda: sum(consumer.deliveries.values()) == 2)
    await asyncio.sleep(0.3)
    assert applied(orders_db, order_id) == 1


async def test_relay_cancelled_between_publish_and_mark_leaves_rows_pending(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    emit(orders_db, 3)

    class HangsAfterPublishing:
        def __init__(self) -> None:
            self.published = asyncio.Event()

        async def publish_raw(self, messages: list[Outgoing]) -> dict[str, str]:
            await rabbit.publish_raw(messages)
            self.published.set()
            await asyncio.sleep(60)
            return {}

    transport = HangsAfterPublishing()
    task = asyncio.create_task(OutboxRelay(orders_db, transport).publish_once())  # type: ignore[arg-type]
    await asyncio.wait_for(transport.published.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [row.status for row in outbox_rows(orders_db)] == [PENDING] * 3
    # The cancelled relay gave its connection (and row locks) back: another relay claims the rows now.
    assert await asyncio.wait_for(OutboxRelay(orders_db, rabbit).publish_once(), 10) == 3


async def test_two_relays_at_once_never_publish_a_row_twice(
    pg_url: str, orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    consumer = await consume(rabbit, orders_db, f"{bus_namespace}orders")
    emit(orders_db, 20)
    replica = make_kit_database(orders_db.url)

    class SlowPublisher:
        """Holds its claimed batch a while, so both relays are inside publish at the same time."""

        def __init__(self) -> None:
            self.batches: list[list[uuid.UUID]] = []

        async def publish_raw(self, messages: list[Outgoing]) -> dict[str, str]:
            self.batches.append([uuid.UUID(m.id) for m in messages])
            await asyncio.sleep(0.5)
            return await rabbit.publish_raw(messages)

    first, second = SlowPublisher(), SlowPublisher()
    try:
        sent = await asyncio.gather(
            OutboxRelay(orders_db, first, batch_size=12).publish_once(),  # type: ignore[arg-type]
            OutboxRelay(replica, second, batch_size=12).publish_once(),  # type: ignore[arg-type]
        )
    finally:
        replica.dispose()

    assert sorted(sent) == [8, 12]
    published = [i for batch in first.batches + second.batches for i in batch]
    assert len(published) == len(set(published)) == 20
    await wait_until(lambda: applied(orders_db) == 20)
    await asyncio.sleep(0.3)
    assert set(consumer.deliveries.values()) == {1}
    assert len(consumer.deliveries) == 20


async def test_message_refused_by_the_broker_goes_dead_after_max_attempts_and_replay_resets_it(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str, amqp_url: str
) -> None:
    # A full queue that rejects new publishes makes the broker nack: a real refusal, not a fake one.
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    full = await channel.declare_queue(
        f"{bus_namespace}refusing",
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        auto_delete=True,
    )
    exchange = await channel.declare_exchange(rabbit.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    await full.bind(exchange, routing_key="#")
    try:
        [_] = emit(orders_db, 1)
        relay = OutboxRelay(orders_db, rabbit, max_attempts=3)
        for attempt in (1, 2):
            assert await relay.publish_once() == 0
            [row] = outbox_rows(orders_db)
            assert (row.status, row.attempts) == (PENDING, attempt)
        assert await relay.publish_once() == 0
        [row] = outbox_rows(orders_db)
        assert (row.status, row.attempts) == (DEAD, 3)
        assert "broker refused" in row.last_error
        assert await relay.publish_once() == 0  # dead rows are not claimed again
        assert outbox_rows(orders_db)[0].attempts == 3
    finally:
        await full.delete(if_unused=False, if_empty=False)
        await connection.close()

    with orders_db.engine.begin() as conn:
        assert replay_dead(conn) == 1
    [row] = outbox_rows(orders_db)
    assert (row.status, row.attempts, row.last_error) == (PENDING, 0, None)
    assert await relay.publish_once() == 1
    assert outbox_rows(orders_db)[0].status == SENT
