"""Fixtures of the kit's own tests: a service database holding only the kit tables plus one table of
handler effects, a namespaced RabbitMQ transport that is torn down afterwards, and handlers that
record what they applied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from contracts import Envelope, OrderCancelled
from shopkit import deadletters, inbox, outbox  # noqa: F401  (their tables join kit_metadata)
from shopkit.bus.rabbitmq import RabbitMQTransport, dead_letter_queue, retry_queue
from shopkit.consumer import EventHandlers, Outcome
from shopkit.db import GUID, Database, kit_metadata
from shopkit.settings import KitSettings
from shopkit.uow import UnitOfWork

KIT_MIGRATIONS = Path(__file__).parent / "kit_migrations"
RETRY_DELAYS = [0.1, 0.2]

effects_metadata = MetaData()
# What handlers did: one row per applied event, so "applied exactly once" is a row count.
effects = Table(
    "handled_effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", GUID(), nullable=False),
    Column("reason", String(200), nullable=False),
)


def on_order_cancelled(event: OrderCancelled, uow: UnitOfWork) -> None:
    uow.session.execute(effects.insert().values(order_id=event.order_id, reason=event.reason))


def handlers_for(fn: Callable[[OrderCancelled, UnitOfWork], None]) -> EventHandlers:
    handlers = EventHandlers()
    handlers.add(OrderCancelled, fn, name="order-cancelled")
    return handlers


def one_by_one(fn: Callable[[Envelope], Awaitable[None]]) -> Callable[[Sequence[Envelope]], Awaitable[list[Outcome]]]:
    """A transport's batch handler made of a per-message test double: raising fails that message."""

    async def handle(envelopes: Sequence[Envelope]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for envelope in envelopes:
            try:
                await fn(envelope)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    return handle


def applied(db: Database, order_id: uuid.UUID | None = None) -> int:
    query = select(func.count()).select_from(effects)
    if order_id is not None:
        query = query.where(effects.c.order_id == order_id)
    with db.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def cancelled(reason: str = "test") -> OrderCancelled:
    return OrderCancelled(order_id=uuid.uuid4(), user_id=uuid.uuid4(), reason=reason)


def make_kit_database(url: str, service: str = "orders") -> Database:
    db = Database(url, service=service)
    kit_metadata.create_all(db.engine)
    effects_metadata.create_all(db.engine)
    return db


@pytest.fixture
def orders_db(pg_url: str) -> Iterator[Database]:
    """The orders role in its own schema, with the kit tables and the effects table."""
    db = make_kit_database(KitSettings(database_url=pg_url).service_database_url("orders"))
    yield db
    db.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = make_kit_database(f"sqlite:///{tmp_path / 'orders.db'}")
    yield db
    db.dispose()


async def delete_namespace(amqp_url: str, namespace: str, queues: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue in queues:
            for name in [queue, dead_letter_queue(queue), *(retry_queue(queue, i) for i in range(5))]:
                await channel.queue_delete(name)
        await channel.exchange_delete(f"{namespace}shop.events")
    finally:
        await connection.close()


@pytest.fixture
async def rabbit(amqp_url: str, bus_namespace: str) -> AsyncIterator[RabbitMQTransport]:
    """A connected transport on this test's private exchange; its queues are deleted afterwards."""
    transport = RabbitMQTransport(amqp_url, retry_delays=RETRY_DELAYS, exchange=f"{bus_namespace}shop.events")
    await transport.connect()
    yield transport
    await transport.close()
    await delete_namespace(amqp_url, bus_namespace, [f"{bus_namespace}orders"])
