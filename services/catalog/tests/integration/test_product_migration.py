"""Migration 38a049fd1eb8 (version, category, images) on a catalog that already has products: every
product stays valid and readable, at version 1 with no category and no images; going back down keeps
the products too. On SQLite (where the downgrade copies the table) and on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from catalog import service
from catalog.app import MIGRATIONS
from catalog.schemas import ProductOut
from catalog.settings import CatalogSettings
from shopkit.db import GUID, Database
from shopkit.migrate import alembic_config
from shopkit.uow import unit_of_work

pytestmark = pytest.mark.integration

BEFORE = "594b76d7e3f1"
# The products table as the revision before this one left it.
OLD_PRODUCTS = sa.table(
    "products",
    sa.column("id", GUID()),
    sa.column("sku", sa.String),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("price", sa.Numeric(12, 2)),
    sa.column("currency", sa.String),
    sa.column("stock", sa.Integer),
    sa.column("is_active", sa.Boolean),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    with db.engine.connect() as connection:
        config = alembic_config(MIGRATIONS, connection)
        (command.downgrade if down else command.upgrade)(config, revision)
        connection.commit()


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request: pytest.FixtureRequest, sqlite_settings: CatalogSettings) -> CatalogSettings:
    return request.getfixturevalue("pg_settings") if request.param == "postgresql" else sqlite_settings


def test_existing_products_stay_valid_through_the_migration_and_back(settings: CatalogSettings) -> None:
    db = Database(settings.service_database_url("catalog"), service="catalog")
    try:
        migrate(db, BEFORE)
        now = datetime.now(UTC)
        ids = [uuid.uuid4(), uuid.uuid4()]
        with db.engine.begin() as connection:
            for n, (product_id, active) in enumerate(zip(ids, (True, False), strict=True)):
                connection.execute(
                    sa.insert(OLD_PRODUCTS).values(
                        id=product_id,
                        sku=f"OLD-{n}",
                        name="Old product",
                        description="",
                        price=Decimal("12.50"),
                        currency="BDT",
                        stock=7,
                        is_active=active,
                        created_at=now,
                        updated_at=now,
                    )
                )

        migrate(db, "head")
        with unit_of_work(db) as uow:
            shown = ProductOut.model_validate(service.get_product(uow, ids[0], include_archived=False))
            looked_up = {row.product_id: row for row in service.lookup_products(uow, ids)}
        assert (shown.category, shown.images, shown.stock, shown.price) == (None, [], 7, Decimal("12.50"))
        assert {pid: (row.version, row.category, row.images) for pid, row in looked_up.items()} == {
            ids[0]: (1, None, []),
            ids[1]: (1, None, []),
        }

        migrate(db, BEFORE, down=True)
        with db.engine.connect() as connection:
            rows = connection.execute(sa.select(OLD_PRODUCTS.c.sku, OLD_PRODUCTS.c.stock)).all()
            checks = sa.inspect(connection).get_check_constraints("products")
        assert sorted(rows) == [("OLD-0", 7), ("OLD-1", 7)]
        # The copy SQLite makes of the table on the way down keeps the rules that guard the stock.
        assert {"ck_products_stock_not_negative", "ck_products_price_positive"} <= {c["name"] for c in checks}
    finally:
        db.dispose()
