"""The idempotent consumer: an event delivered twice, even twice at the same moment, applies once."""

from __future__ import annotations

import threading
import time

import pytest

from contracts import OrderCancelled, new_envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.uow import UnitOfWork

from .conftest import applied, cancelled, handlers_for, on_order_cancelled

pytestmark = pytest.mark.integration


def test_same_event_delivered_twice_applies_once(orders_db: Database) -> None:
    dispatcher = EventDispatcher(orders_db, handlers_for(on_order_cancelled))
    event = cancelled()
    envelope = new_envelope(event, producer="orders")

    dispatcher.handle(envelope)
    dispatcher.handle(envelope)
    dispatcher.handle(new_envelope(cancelled(), producer="orders"))

    assert applied(orders_db, event.order_id) == 1
    assert applied(orders_db) == 2


def test_failed_handler_leaves_no_inbox_record_so_the_redelivery_applies(orders_db: Database) -> None:
    calls = []

    def fails_first(event: OrderCancelled, uow: UnitOfWork) -> None:
        calls.append(event.order_id)
        if len(calls) == 1:
            on_order_cancelled(event, uow)
            raise RuntimeError("handler crashed after writing")
        on_order_cancelled(event, uow)

    dispatcher = EventDispatcher(orders_db, handlers_for(fails_first))
    envelope = new_envelope(cancelled(), producer="orders")
    with pytest.raises(RuntimeError):
        dispatcher.handle(envelope)
    assert applied(orders_db) == 0
    dispatcher.handle(envelope)
    dispatcher.handle(envelope)
    assert applied(orders_db) == 1
    assert len(calls) == 2


@pytest.mark.parametrize("database", ["orders_db", "sqlite_db"])
def test_same_event_delivered_twice_concurrently_applies_once(database: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue(database)
    both_inside = threading.Barrier(2, timeout=10)

    def slow_handler(event: OrderCancelled, uow: UnitOfWork) -> None:
        on_order_cancelled(event, uow)
        time.sleep(0.3)  # the other delivery arrives while this one is uncommitted

    dispatcher = EventDispatcher(db, handlers_for(slow_handler))
    envelope = new_envelope(cancelled(), producer="orders")
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            both_inside.wait()
            dispatcher.handle(envelope)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert errors == []
    assert applied(db) == 1
