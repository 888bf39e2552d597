"""The RabbitMQ transport: bounded retries then the dead-letter queue while later messages flow, acks
only after the handler's transaction committed, nothing lost across a broker restart."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Sequence

import pytest

from contracts import Envelope, OrderCancelled, new_envelope
from shopkit.bus.rabbitmq import RabbitMQTransport
from shopkit.consumer import EventDispatcher, Outcome
from shopkit.db import Database
from shopkit.outbox import SENT, outbox
from shopkit.relay import OutboxRelay
from shopkit.uow import UnitOfWork

from .conftest import RETRY_DELAYS, applied, cancelled, handlers_for, on_order_cancelled, one_by_one
from .test_outbox_relay import emit, wait_until

pytestmark = pytest.mark.integration


async def test_failing_handler_is_retried_a_bounded_number_of_times_then_dead_lettered(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    queue = f"{bus_namespace}orders"
    poison = cancelled("poison")
    attempts: Counter[uuid.UUID] = Counter()

    def fails_on_poison(event: OrderCancelled, uow: UnitOfWork) -> None:
        attempts[event.order_id] += 1
        if event.reason == "poison":
            raise RuntimeError("this order cannot be handled")
        on_order_cancelled(event, uow)

    await rabbit.subscribe(queue, ["OrderCancelled"], EventDispatcher(orders_db, handlers_for(fails_on_poison)))
    await rabbit.publish([new_envelope(poison, producer="orders")])
    later = [cancelled() for _ in range(5)]
    await rabbit.publish([new_envelope(event, producer="orders") for event in later])

    await wait_until(lambda: applied(orders_db) == 5)
    deadline = time.monotonic() + 10
    while await rabbit.dead_letter_count(queue) < 1:
        assert time.monotonic() < deadline, "the poison message never reached the dead-letter queue"
        await asyncio.sleep(0.1)
    await asyncio.sleep(sum(RETRY_DELAYS) + 0.5)  # no further attempt after dead-lettering

    assert attempts[poison.order_id] == 1 + len(RETRY_DELAYS)
    assert await rabbit.dead_letter_count(queue) == 1
    assert applied(orders_db, poison.order_id) == 0

    # Replaying with a fixed handler applies it (fresh retry budget) and empties the DLQ.
    def fixed(event: OrderCancelled, uow: UnitOfWork) -> None:
        on_order_cancelled(event, uow)

    await rabbit.close()
    await rabbit.connect()
    await rabbit.subscribe(queue, ["OrderCancelled"], EventDispatcher(orders_db, handlers_for(fixed)))
    assert await rabbit.replay_dead_letters(queue) == 1
    await wait_until(lambda: applied(orders_db, poison.order_id) == 1)
    assert await rabbit.dead_letter_count(queue) == 0


async def test_handler_that_raises_is_not_acked_and_its_message_is_not_lost(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    failures = {"left": 1}

    def fails_once(event: OrderCancelled, uow: UnitOfWork) -> None:
        on_order_cancelled(event, uow)
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database hiccup")

    queue = f"{bus_namespace}orders"
    await rabbit.subscribe(queue, ["OrderCancelled"], EventDispatcher(orders_db, handlers_for(fails_once)))
    event = cancelled()
    await rabbit.publish([new_envelope(event, producer="orders")])
    await wait_until(lambda: applied(orders_db, event.order_id) == 1)
    assert failures["left"] == 0
    assert await rabbit.dead_letter_count(queue) == 0


async def test_message_is_acked_only_after_commit_so_a_consumer_dying_mid_handler_loses_nothing(
    orders_db: Database, amqp_url: str, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    queue = f"{bus_namespace}orders"
    entered = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def stuck(envelope: Envelope) -> None:
        entered.set()
        await release.wait()  # the process "dies" here, before anything is committed

    dying = RabbitMQTransport(amqp_url, retry_delays=RETRY_DELAYS, exchange=rabbit.exchange_name)
    await dying.connect()
    await dying.subscribe(queue, ["OrderCancelled"], one_by_one(stuck))
    event = cancelled()
    await rabbit.publish([new_envelope(event, producer="orders")])
    await asyncio.wait_for(entered.wait(), 10)
    await dying.close()  # unacked: the broker gives the message to the next consumer

    dispatcher = EventDispatcher(orders_db, handlers_for(on_order_cancelled))
    await rabbit.subscribe(queue, ["OrderCancelled"], dispatcher)
    await wait_until(lambda: applied(orders_db, event.order_id) == 1)
    loop.call_soon(release.set)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.serial  # restarts the broker under every other test
async def test_broker_restart_mid_stream_loses_nothing_and_applies_each_event_once(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    queue = f"{bus_namespace}orders"
    deliveries: Counter[uuid.UUID] = Counter()
    dispatcher = EventDispatcher(orders_db, handlers_for(on_order_cancelled))

    async def counting(envelopes: Sequence[Envelope]) -> list[Outcome]:
        for envelope in envelopes:
            deliveries[envelope.id] += 1
        return await dispatcher(envelopes)

    await rabbit.subscribe(queue, ["OrderCancelled"], counting)
    relay = OutboxRelay(orders_db, rabbit, poll_interval=0.1)
    await relay.start()
    total = 60
    try:
        order_ids = await asyncio.to_thread(emit, orders_db, total // 3)
        await asyncio.sleep(0.3)
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            order_ids += await asyncio.to_thread(emit, orders_db, total // 3)
            await asyncio.sleep(1)
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
        order_ids += await asyncio.to_thread(emit, orders_db, total - len(order_ids))
        await wait_until(lambda: applied(orders_db) >= total, within=45)
        await wait_until(lambda: all_sent(orders_db), within=15)
    finally:
        await relay.stop()

    assert applied(orders_db) == total
    assert all(applied(orders_db, order_id) == 1 for order_id in order_ids)
    assert len(deliveries) == total


def all_sent(db: Database) -> bool:
    with db.engine.connect() as connection:
        return {row.status for row in connection.execute(outbox.select())} == {SENT}


async def test_publishes_and_the_acks_of_a_batch_leave_in_a_few_sends(
    orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiormq writes every frame with a send of its own; a relay's 50 publishes and a batch's acks
    must not cost a send (and a segment for the broker to read) each."""
    from asyncio import selector_events

    sends = 0
    real_write = selector_events._SelectorSocketTransport.write

    def counting_write(self: object, data: bytes) -> None:
        nonlocal sends
        sends += 1
        real_write(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counting_write)
    events = [cancelled() for _ in range(50)]
    await rabbit.publish([new_envelope(event, producer="orders") for event in events])
    assert sends <= 10, f"{sends} sends for 50 publishes"

    queue = f"{bus_namespace}orders"
    gate = asyncio.Event()
    seen = 0

    async def held_until_the_gate_opens(envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        nonlocal seen
        await gate.wait()
        seen += len(envelopes)
        return [None] * len(envelopes)

    await rabbit.subscribe(queue, ["OrderCancelled"], held_until_the_gate_opens)
    await rabbit.publish([new_envelope(cancelled(), producer="orders") for _ in range(31)])
    await asyncio.sleep(0.5)  # delivered to the consumer, held in its batches
    sends = 0
    gate.set()
    await wait_until(lambda: seen == 31)
    await asyncio.sleep(0.3)
    assert sends <= 5, f"{sends} sends for the acks of 31 messages"
