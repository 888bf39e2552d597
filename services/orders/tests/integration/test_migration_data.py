"""The fulfilment migration keeps existing orders valid, on SQLite and PostgreSQL: a refund seen before
its payment moves onto its order (and still ends it refunded when the payment succeeds), and going
back turns shipped orders into confirmed ones and puts full refunds back in their old table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from contracts import PaymentSucceeded
from orders import repository
from orders.app import MIGRATIONS
from orders.saga import decide
from shopkit.db import Database
from shopkit.migrate import alembic_config, upgrade
from shopkit.settings import KitSettings

pytestmark = pytest.mark.integration

BEFORE = "8e7126ca76c7"
NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'orders.db'}", service="orders")
    else:
        pg_url = request.getfixturevalue("pg_url")
        database = Database(KitSettings(database_url=pg_url).service_database_url("orders"), service="orders")
    try:
        yield database
    finally:
        database.dispose()


def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    with db.engine.connect() as connection:
        (command.downgrade if down else command.upgrade)(alembic_config(MIGRATIONS, connection), revision)
        connection.commit()


def insert_order(connection, order_id: uuid.UUID, status: str, payment_id: uuid.UUID | None = None) -> None:
    connection.execute(
        text(
            "INSERT INTO orders (id, user_id, status, currency, total_amount, payment_id, created_at, updated_at,"
            " expires_at) VALUES (:id, :user, :status, 'BDT', 100, :payment, :now, :now, :now)"
        ),
        {"id": str(order_id), "user": str(uuid.uuid4()), "status": status, "payment": payment_id, "now": NOW},
    )


def test_refunds_seen_move_onto_their_order_and_back(db: Database):
    migrate(db, BEFORE)
    waiting, paid, payment, applied = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with db.engine.begin() as connection:
        insert_order(connection, waiting, "pending_payment")
        insert_order(connection, paid, "refunded", str(applied))
        for order_id, payment_id in ((waiting, payment), (paid, applied)):
            connection.execute(
                text(
                    "INSERT INTO refunded_payments (order_id, payment_id, reason, at) VALUES (:o, :p, 'dashboard', :at)"
                ),
                {"o": str(order_id), "p": str(payment_id), "at": NOW},
            )
            connection.execute(
                text(
                    "INSERT INTO order_items (order_id, product_id, position, sku, name, unit_price, quantity,"
                    " line_total) VALUES (:o, :p, 0, 'SKU', 'Thing', 100, 1, 100)"
                ),
                {"o": str(order_id), "p": str(uuid.uuid4())},
            )
            connection.execute(
                text(
                    "INSERT INTO order_events (order_id, status, reason, at)"
                    " VALUES (:o, 'pending_payment', 'placed', :at)"
                ),
                {"o": str(order_id), "at": NOW},
            )

    upgrade(db, MIGRATIONS)
    assert children(db) == (2, 2)  # SQLite rebuilt `orders`; its lines and timelines are all still there

    with db.sessions() as session:
        order = repository.lock_order(session, waiting)
        assert order is not None and order.refunded_amount == 0
        state = repository.state_of(order)
        assert [(r.payment_id, r.fully, r.refunded) for r in state.refunds_seen] == [(payment, True, None)]
        success = PaymentSucceeded(
            payment_id=payment, order_id=waiting, provider="stripe", amount=100, currency="BDT", items=[]
        )
        assert decide(state, success).state.status == "refunded"
        other = repository.lock_order(session, paid)
        assert other is not None and other.refunds_seen is None  # already applied to its paying payment

    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE orders SET status = 'shipped', shipment_carrier = 'DHL', shipped_at = :now WHERE id = :id"),
            {"now": NOW, "id": str(paid)},
        )
    migrate(db, BEFORE, down=True)
    with db.engine.connect() as connection:
        statuses = dict(connection.execute(text("SELECT id, status FROM orders")).all())
        kept = connection.execute(text("SELECT order_id, payment_id FROM refunded_payments")).all()
    assert {str(k): v for k, v in statuses.items()} == {str(waiting): "pending_payment", str(paid): "confirmed"}
    assert [(str(o), str(p)) for o, p in kept] == [(str(waiting), str(payment))]
    assert children(db) == (2, 2)


def children(db: Database) -> tuple[int, int]:
    with db.engine.connect() as connection:
        items = connection.execute(text("SELECT count(*) FROM order_items")).scalar_one()
        events = connection.execute(text("SELECT count(*) FROM order_events")).scalar_one()
    return items, events
