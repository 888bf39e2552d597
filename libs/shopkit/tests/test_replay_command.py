"""`python -m shopkit.replay`: dead outbox rows back to pending, dead letters back to the queue."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import aio_pika
import pytest
from sqlalchemy import select

from contracts import OrderCancelled, new_envelope
from shopkit.bus.rabbitmq import RabbitMQTransport, dead_letter_queue
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.outbox import DEAD, PENDING, SENT, outbox
from shopkit.uow import UnitOfWork

from .conftest import applied, cancelled, handlers_for, on_order_cancelled
from .test_outbox_relay import wait_until

pytestmark = pytest.mark.integration


def add_row(db: Database, status: str) -> uuid.UUID:
    row_id = uuid.uuid4()
    with db.engine.begin() as connection:
        connection.execute(
            outbox.insert().values(
                id=row_id,
                event_type="OrderCancelled",
                envelope=new_envelope(cancelled(), producer="orders").model_dump(mode="json"),
                status=status,
                attempts=10 if status == DEAD else 0,
                last_error="broker refused" if status == DEAD else None,
                created_at=datetime.now(UTC),
            )
        )
    return row_id


def statuses(db: Database) -> dict[uuid.UUID, tuple[str, int]]:
    with db.engine.connect() as connection:
        rows = connection.execute(select(outbox.c.id, outbox.c.status, outbox.c.attempts))
        return {row.id: (row.status, row.attempts) for row in rows}


async def queue_depth(amqp_url: str, name: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(name, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


def run_replay(pg_url: str, amqp_url: str, bus_namespace: str, *flags: str) -> str:
    env = {**os.environ, "SHOP_DATABASE_URL": pg_url, "SHOP_AMQP_URL": amqp_url, "SHOP_BUS_NAMESPACE": bus_namespace}
    result = subprocess.run(
        [sys.executable, "-m", "shopkit.replay", "--service", "orders", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_replay_command_resets_dead_rows_and_moves_dead_letters_back(
    pg_url: str, amqp_url: str, orders_db: Database, rabbit: RabbitMQTransport, bus_namespace: str
) -> None:
    dead, sent = add_row(orders_db, DEAD), add_row(orders_db, SENT)
    queue = f"{bus_namespace}orders"

    def always_fails(event: OrderCancelled, uow: UnitOfWork) -> None:
        raise RuntimeError("bug in the handler")

    await rabbit.subscribe(queue, ["OrderCancelled"], EventDispatcher(orders_db, handlers_for(always_fails)))
    poison = cancelled("poison")
    await rabbit.publish([new_envelope(poison, producer="orders")])
    for _ in range(100):
        if await rabbit.dead_letter_count(queue) == 1:
            break
        await asyncio.sleep(0.1)
    assert await rabbit.dead_letter_count(queue) == 1
    await rabbit.close()  # the service is down while the operator replays

    out = await asyncio.to_thread(run_replay, pg_url, amqp_url, bus_namespace, "--outbox")
    assert "1 dead row(s)" in out
    assert statuses(orders_db) == {dead: (PENDING, 0), sent: (SENT, 0)}
    assert await queue_depth(amqp_url, dead_letter_queue(queue)) == 1  # --outbox alone leaves the DLQ

    out = await asyncio.to_thread(run_replay, pg_url, amqp_url, bus_namespace)  # both
    assert "0 dead row(s)" in out and "1 message(s) moved back" in out
    assert await queue_depth(amqp_url, dead_letter_queue(queue)) == 0
    assert await queue_depth(amqp_url, queue) == 1

    # The fixed service comes back and handles the replayed message.
    await rabbit.connect()
    fixed = EventDispatcher(orders_db, handlers_for(on_order_cancelled))
    await rabbit.subscribe(queue, ["OrderCancelled"], fixed)
    await wait_until(lambda: applied(orders_db, poison.order_id) == 1)
