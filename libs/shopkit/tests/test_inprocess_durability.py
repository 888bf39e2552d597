"""The in-process bus keeps the distributed mode's guarantee: the relay marks an outbox row sent only
after every consumer's transaction committed, a message that keeps failing is kept in the consumer's
own database (not in memory), and an operator's replay request brings it back through the handler."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts import Envelope, OrderCancelled, new_envelope
from shopkit import deadletters
from shopkit.bus.inprocess import InProcessTransport
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.lifecycle import ServiceRuntime
from shopkit.outbox import PENDING, SENT, outbox
from shopkit.relay import OutboxRelay
from shopkit.settings import KitSettings
from shopkit.uow import UnitOfWork

from .conftest import (
    KIT_MIGRATIONS,
    applied,
    cancelled,
    effects_metadata,
    handlers_for,
    make_kit_database,
    on_order_cancelled,
)
from .test_outbox_relay import emit, wait_until

pytestmark = pytest.mark.integration


def statuses(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.execute(select(outbox.c.status)).scalars())


async def test_publish_returns_only_once_the_consumer_has_committed(tmp_path: Path) -> None:
    producer = make_kit_database(f"sqlite:///{tmp_path / 'orders.db'}")
    consumer = make_kit_database(f"sqlite:///{tmp_path / 'payments.db'}", service="payments")
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def held(event: OrderCancelled, uow: UnitOfWork) -> None:
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(10)
        on_order_cancelled(event, uow)

    transport = InProcessTransport(retry_delays=[0.05])
    await transport.connect()
    await transport.subscribe("payments", ["OrderCancelled"], EventDispatcher(consumer, handlers_for(held)))
    relay = OutboxRelay(producer, transport)
    await asyncio.to_thread(emit, producer, 3)
    publishing = asyncio.create_task(relay.publish_once())
    await asyncio.sleep(0.3)
    # The consumer has not committed: the rows are still pending, so a crash now republishes them.
    assert not publishing.done()
    assert statuses(producer) == [PENDING] * 3
    gate.set()
    assert await asyncio.wait_for(publishing, 10) == 3
    assert applied(consumer) == 3
    assert statuses(producer) == [SENT] * 3
    await transport.close()
    producer.dispose()
    consumer.dispose()


async def test_a_republished_row_after_a_crash_is_applied_once(tmp_path: Path) -> None:
    producer = make_kit_database(f"sqlite:///{tmp_path / 'orders.db'}")
    consumer = make_kit_database(f"sqlite:///{tmp_path / 'payments.db'}", service="payments")
    transport = InProcessTransport()
    await transport.connect()
    await transport.subscribe(
        "payments", ["OrderCancelled"], EventDispatcher(consumer, handlers_for(on_order_cancelled))
    )
    [order_id] = await asyncio.to_thread(emit, producer, 1)
    with producer.engine.connect() as connection:
        envelope = connection.execute(select(outbox.c.envelope)).scalar_one()
    # The consumer committed but the process died before the relay marked the row: at the next start
    # the relay publishes it again.
    await transport.publish([Envelope.model_validate(envelope)])
    assert await OutboxRelay(producer, transport).publish_once() == 1
    assert applied(consumer, order_id) == 1
    await transport.close()


def runtime_for(tmp_path: Path, handler: object) -> ServiceRuntime:
    settings = KitSettings(var_dir=tmp_path, database_url=None, amqp_url=None, retry_delays=[0.05, 0.05])
    runtime = ServiceRuntime(
        "payments", settings, migrations=KIT_MIGRATIONS, transport=InProcessTransport(retry_delays=[0.05, 0.05])
    )
    runtime.handlers.add(OrderCancelled, handler, name="order-cancelled")  # type: ignore[arg-type]
    return runtime


async def test_a_message_that_keeps_failing_is_kept_in_the_consumers_database_and_replayed_on_request(
    tmp_path: Path,
) -> None:
    broken = {"yes": True}

    def sometimes(event: OrderCancelled, uow: UnitOfWork) -> None:
        if broken["yes"]:
            raise RuntimeError("a bug, fixed later")
        on_order_cancelled(event, uow)

    runtime = runtime_for(tmp_path, sometimes)
    await runtime.start()
    effects_metadata.create_all(runtime.db.engine)
    try:
        event = cancelled()
        envelope = new_envelope(event, producer="orders")
        await asyncio.wait_for(runtime.transport.publish([envelope]), 10)  # returns once it is kept
        with runtime.db.engine.connect() as connection:
            assert deadletters.count(connection) == 1
        assert applied(runtime.db) == 0

        broken["yes"] = False
        with runtime.db.engine.begin() as connection:
            assert deadletters.request_replay(connection) == 1
        await runtime._replay_requested_dead_letters()
        assert applied(runtime.db, event.order_id) == 1
        with runtime.db.engine.connect() as connection:
            assert deadletters.count(connection) == 0
    finally:
        await runtime.stop()


async def test_the_runtime_subscribes_its_handlers_and_applies_published_events(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, on_order_cancelled)
    await runtime.start()
    effects_metadata.create_all(runtime.db.engine)
    try:
        events = [cancelled() for _ in range(5)]
        await asyncio.wait_for(runtime.transport.publish([new_envelope(e, producer="orders") for e in events]), 10)
        await wait_until(lambda: applied(runtime.db) == 5)
        assert {applied(runtime.db, e.order_id) for e in events} == {1}
    finally:
        await runtime.stop()
