"""The in-process transport keeps RabbitMQ's semantics (routing by type, bounded retries, a dead list,
replay); the relay loop is woken by commits from any thread and a failing wake-up never fails a commit."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter

import pytest

from contracts import Envelope, OrderPlaced, new_envelope
from shopkit.bus.inprocess import InProcessTransport
from shopkit.db import Database
from shopkit.outbox import SENT, outbox
from shopkit.relay import OutboxRelay
from shopkit.uow import unit_of_work

from .conftest import cancelled, one_by_one
from .test_outbox_relay import emit, wait_until

pytestmark = pytest.mark.integration


def placed() -> OrderPlaced:
    return OrderPlaced(order_id=uuid.uuid4(), user_id=uuid.uuid4(), currency="BDT", total_amount="1.00", items=[])


class Recorder:
    def __init__(self, fail_for: set[uuid.UUID] | None = None) -> None:
        self.calls: Counter[uuid.UUID] = Counter()
        self.handled: list[Envelope] = []
        self.fail_for = fail_for or set()

    async def __call__(self, envelope: Envelope) -> None:
        self.calls[envelope.id] += 1
        if envelope.id in self.fail_for:
            raise RuntimeError("handler keeps failing")
        self.handled.append(envelope)


async def test_routing_by_event_type_to_each_subscribed_queue() -> None:
    transport = InProcessTransport(retry_delays=[0.05])
    await transport.connect()
    orders, payments = Recorder(), Recorder()
    await transport.subscribe("orders", ["OrderCancelled"], one_by_one(orders))
    await transport.subscribe("payments", ["OrderCancelled", "OrderPlaced"], one_by_one(payments))
    cancel, place = new_envelope(cancelled(), producer="x"), new_envelope(placed(), producer="x")
    assert await transport.publish([cancel, place]) == {}
    await wait_until(lambda: len(payments.handled) == 2 and len(orders.handled) == 1)
    assert [e.id for e in orders.handled] == [cancel.id]
    assert {e.id for e in payments.handled} == {cancel.id, place.id}
    await transport.close()


async def test_failing_handler_retried_then_dead_while_later_messages_flow_and_replay() -> None:
    delays = [0.05, 0.1]
    transport = InProcessTransport(retry_delays=delays, workers=2)
    await transport.connect()
    poison = new_envelope(cancelled("poison"), producer="x")
    recorder = Recorder(fail_for={poison.id})
    await transport.subscribe("orders", ["OrderCancelled"], one_by_one(recorder))
    later = [new_envelope(cancelled(), producer="x") for _ in range(5)]
    await transport.publish([poison, *later])

    await wait_until(lambda: len(recorder.handled) == 5)
    await wait_until(lambda: recorder.calls[poison.id] == 1 + len(delays))
    await asyncio.sleep(sum(delays) + 0.2)
    assert recorder.calls[poison.id] == 1 + len(delays)
    assert await transport.dead_letter_count("orders") == 1

    recorder.fail_for.clear()
    assert await transport.replay_dead_letters("orders") == 1
    await wait_until(lambda: poison.id in {e.id for e in recorder.handled})
    assert await transport.dead_letter_count("orders") == 0
    await transport.close()


async def test_relay_is_woken_by_a_commit_from_another_thread(sqlite_db: Database) -> None:
    transport = InProcessTransport()
    await transport.connect()
    recorder = Recorder()
    await transport.subscribe("payments", ["OrderCancelled"], one_by_one(recorder))
    relay = OutboxRelay(sqlite_db, transport, poll_interval=30)  # only a wake-up can publish in time
    await relay.start()
    try:
        await asyncio.sleep(0.2)  # the relay's first pass found nothing and now sleeps
        await asyncio.to_thread(emit, sqlite_db, 3)
        await wait_until(lambda: len(recorder.handled) == 3, within=5)
        with sqlite_db.engine.connect() as connection:
            assert {row.status for row in connection.execute(outbox.select())} == {SENT}
    finally:
        await relay.stop()
        await transport.close()


async def test_stopping_one_relay_leaves_another_relays_wake_up_hooked(sqlite_db: Database) -> None:
    transport = InProcessTransport()
    first, second = OutboxRelay(sqlite_db, transport), OutboxRelay(sqlite_db, transport)
    await first.start()
    await second.start()
    await first.stop()
    assert sqlite_db.on_outbox_write == second.wake
    await second.stop()
    assert sqlite_db.on_outbox_write is None


def test_a_failing_wake_up_never_fails_a_committed_unit_of_work(sqlite_db: Database) -> None:
    def broken_hook() -> None:
        raise RuntimeError("Event loop is closed")

    sqlite_db.on_outbox_write = broken_hook
    with unit_of_work(sqlite_db) as uow:
        uow.emit(cancelled())
        uow.commit()
    with sqlite_db.engine.connect() as connection:
        assert len(connection.execute(outbox.select()).all()) == 1


def test_wake_after_the_loop_closed_is_harmless(sqlite_db: Database) -> None:
    loop = asyncio.new_event_loop()
    relay = OutboxRelay(sqlite_db, InProcessTransport())
    loop.run_until_complete(relay.start())
    loop.run_until_complete(relay.stop())
    sqlite_db.on_outbox_write = relay.wake  # a request thread still holding the hook at shutdown
    loop.close()
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            with unit_of_work(sqlite_db) as uow:
                uow.emit(cancelled())
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=commit)
    thread.start()
    thread.join(10)
    assert errors == []


async def test_unknown_event_type_is_not_routed() -> None:
    transport = InProcessTransport()
    await transport.connect()
    recorder = Recorder()
    await transport.subscribe("orders", ["OrderCancelled"], one_by_one(recorder))
    await transport.publish([new_envelope(placed(), producer="x")])
    await asyncio.sleep(0.1)
    assert recorder.calls == Counter()
    await transport.close()
    assert not transport.is_connected
