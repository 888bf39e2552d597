"""Orders' view of the catalog's products: fed by ProductChanged, read by placement without asking the
catalog. A row only moves to a newer version, whatever order events and read-throughs arrive in."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from contracts import ProductChanged
from orders.domain import CatalogProduct
from orders.models import Product
from shopkit.db import upsert_insert

VIEW = cast(Table, Product.__table__)
_FACTS = ("sku", "name", "price", "currency", "is_active", "stock", "version", "updated_at")

# The hot path's one read: plain SQL text, nothing built or compiled per call.
_PG_READ = (
    "SELECT product_id::text, sku, name, price, currency, stock, is_active FROM products"
    " WHERE product_id = ANY(%(ids)s::uuid[])"
)
_PORTABLE_READ = select(
    VIEW.c.product_id, VIEW.c.sku, VIEW.c.name, VIEW.c.price, VIEW.c.currency, VIEW.c.stock, VIEW.c.is_active
).where(VIEW.c.product_id.in_(bindparam("ids", expanding=True)))


def read_products(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogProduct]:
    """The view's rows of these products; ids it has not heard of are absent."""
    if session.get_bind().dialect.name == "postgresql":
        rows: Iterable[Any] = session.connection().exec_driver_sql(_PG_READ, {"ids": [str(i) for i in ids]})
    else:
        rows = session.execute(_PORTABLE_READ, {"ids": ids})
    products = {}
    for product_id, sku, name, price, currency, stock, is_active in rows:
        key = product_id if isinstance(product_id, uuid.UUID) else uuid.UUID(product_id)
        products[key] = CatalogProduct(key, sku, name, price, currency, stock, bool(is_active))
    return products


def apply_product_changes(session: Session, changes: Iterable[ProductChanged]) -> int:
    """Store the newest version of each product, and only where it is newer than the stored one.
    One statement, rows in product-id order: concurrent batches (and read-throughs) lock the rows
    they share in the same order and never deadlock. Returns how many products were considered."""
    newest: dict[uuid.UUID, ProductChanged] = {}
    for change in changes:
        held = newest.get(change.product_id)
        if held is None or change.version > held.version:
            newest[change.product_id] = change
    if not newest:
        return 0
    now = datetime.now(UTC)
    rows = [
        {
            "product_id": change.product_id,
            "sku": change.sku,
            "name": change.name,
            "price": change.price,
            "currency": change.currency,
            "is_active": change.is_active,
            "stock": change.stock,
            "version": change.version,
            "updated_at": now,
        }
        for change in (newest[product_id] for product_id in sorted(newest))
    ]
    connection = session.connection()
    connection.execute(_upsert(connection.dialect.name), rows)
    return len(rows)


@lru_cache(maxsize=4)
def _upsert(dialect: str) -> Any:
    """Built once per dialect and given the rows as parameters (SQLAlchemy sends them as one multi-row
    INSERT): `.values(rows)` built and compiled a new statement for every batch."""
    statement = upsert_insert(dialect, VIEW)
    return statement.on_conflict_do_update(
        index_elements=[VIEW.c.product_id],
        set_={column: statement.excluded[column] for column in _FACTS},
        where=VIEW.c.version < statement.excluded.version,
    )
