"""Catalog test helpers: settings, tokens signed with the kit's dev key pair, an app and its database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from catalog.app import MIGRATIONS
from catalog.handlers import HANDLERS
from catalog.models import Product, StockMovement
from catalog.settings import CatalogSettings
from contracts import Envelope, OrderLine, PaymentSucceeded, StockCommitRequested, new_envelope
from shopkit.consumer import EventDispatcher
from shopkit.db import Database
from shopkit.migrate import upgrade
from shopkit.settings import KitSettings
from shopkit.testing import mint_access_token
from shopkit.uow import unit_of_work

TokenFactory = Callable[..., str]


def mint_token(
    settings: KitSettings, *, role: str, user_id: uuid.UUID | None = None, expires_in: timedelta = timedelta(minutes=15)
) -> str:
    return mint_access_token(settings, role=role, user_id=user_id, expires_in=expires_in)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> CatalogSettings:
    return CatalogSettings(var_dir=tmp_path, log_json=False)


# Up to 2 x 6 connections race in the concurrency tests: enough to contend for every row lock, and
# within PostgreSQL's 100 connections, which the test runs going side by side share.
POOL_SIZE = 6


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path) -> CatalogSettings:
    return CatalogSettings(database_url=pg_url, var_dir=tmp_path, log_json=False, db_pool_size=POOL_SIZE)


def migrated_database(settings: KitSettings, *, pool_size: int = POOL_SIZE) -> Database:
    """The catalog's database at head, as its own role, without starting the app (no relay, no bus)."""
    db = Database(settings.service_database_url("catalog"), service="catalog", pool_size=pool_size)
    upgrade(db, MIGRATIONS)
    return db


@pytest.fixture
def pg_db(pg_settings: CatalogSettings) -> Iterator[Database]:
    db = migrated_database(pg_settings)
    yield db
    db.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest, sqlite_settings: CatalogSettings) -> Iterator[Database]:
    """The catalog's database on PostgreSQL, then on SQLite (all-in-one mode)."""
    settings = request.getfixturevalue("pg_settings") if request.param == "postgresql" else sqlite_settings
    db = migrated_database(settings)
    yield db
    db.dispose()


@pytest.fixture
def pg_dispatcher(pg_db: Database) -> EventDispatcher:
    return EventDispatcher(pg_db, HANDLERS)


@pytest.fixture(scope="session")
def auth_headers() -> Callable[..., dict[str, str]]:
    """`auth_headers(settings, "admin")`: an Authorization header with a fresh token of that role
    (`expires_in=timedelta(seconds=-60)` for an expired one)."""

    def headers(settings: KitSettings, role: str, expires_in: timedelta = timedelta(minutes=15)) -> dict[str, str]:
        return bearer(mint_token(settings, role=role, expires_in=expires_in))

    return headers


@pytest.fixture
def seed_product() -> Callable[..., uuid.UUID]:
    """`seed_product(db, stock=5)`: a product written straight to the database, with its initial
    ledger row, as the create route would leave it."""

    def seed(
        db: Database, *, stock: int, price: str = "100.00", is_active: bool = True, product_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        now = datetime.now(UTC)
        product = Product(
            id=product_id or uuid.uuid4(),
            sku=f"SKU-{uuid.uuid4().hex[:10]}",
            name="Seeded",
            description="",
            price=Decimal(price),
            currency="BDT",
            stock=stock,
            is_active=is_active,
            created_at=now,
            updated_at=now,
        )
        with unit_of_work(db) as uow:
            uow.session.add(product)
            if stock:
                uow.session.add(
                    StockMovement(
                        id=uuid.uuid4(),
                        product_id=product.id,
                        delta=stock,
                        cause="initial",
                        stock_after=stock,
                        created_at=now,
                    )
                )
            uow.commit()
        return product.id

    return seed


@pytest.fixture
def payment_succeeded() -> Callable[..., Envelope]:
    """`payment_succeeded({product_id: quantity}, order_id=...)`: the envelope payments would publish."""

    def envelope(
        quantities: dict[uuid.UUID, int],
        *,
        order_id: uuid.UUID | None = None,
        payment_id: uuid.UUID | None = None,
        producer: str = "payments",
    ) -> Envelope:
        lines = [
            OrderLine(product_id=pid, sku="SKU", name="Seeded", unit_price=Decimal("100.00"), quantity=qty)
            for pid, qty in quantities.items()
        ]
        total = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
        order_id = order_id or uuid.uuid4()
        data = PaymentSucceeded(
            payment_id=payment_id or uuid.uuid4(),
            order_id=order_id,
            provider="stripe",
            amount=total,
            currency="BDT",
            items=lines,
        )
        return new_envelope(data, producer=producer, correlation_id=order_id)

    return envelope


@pytest.fixture
def stock_commit_requested() -> Callable[..., Envelope]:
    """`stock_commit_requested({product_id: quantity}, order_id=..., payment_id=...)`: the orders
    sweeper re-driving a paid order whose stock answer never came."""

    def envelope(
        quantities: dict[uuid.UUID, int], *, order_id: uuid.UUID | str, payment_id: uuid.UUID | str
    ) -> Envelope:
        lines = [
            OrderLine(product_id=pid, sku="SKU", name="Seeded", unit_price=Decimal("100.00"), quantity=qty)
            for pid, qty in quantities.items()
        ]
        data = StockCommitRequested(
            order_id=uuid.UUID(str(order_id)), payment_id=uuid.UUID(str(payment_id)), items=lines
        )
        return new_envelope(data, producer="orders", correlation_id=order_id)

    return envelope
