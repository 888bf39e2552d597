"""ProductChanged: what the catalog tells other services about a product whenever it changes. Always
built from the row as the changing statement left it (its RETURNING, or the row under this
transaction's lock), so an event's version and facts belong together."""

from __future__ import annotations

from typing import Any

from contracts import EventData, ProductChanged
from shopkit.uow import UnitOfWork


def product_changed(row: Any, *, stock: int | None = None, version: int | None = None) -> ProductChanged:
    """The event for a product row; `stock` and `version` as written by the statement that changed a
    row read (and locked) before it."""
    return ProductChanged(
        product_id=row.id,
        sku=row.sku,
        name=row.name,
        price=row.price,
        currency=row.currency,
        is_active=row.is_active,
        stock=row.stock if stock is None else stock,
        version=row.version if version is None else version,
        category=row.category,
        images=row.images,
    )


def emit_product_changed(
    uow: UnitOfWork,
    row: Any,
    *,
    stock: int | None = None,
    version: int | None = None,
    caused_by: EventData | None = None,
) -> None:
    # Correlated by product, so that a reader (and the log) can follow one product's changes.
    uow.emit(product_changed(row, stock=stock, version=version), correlation_id=row.id, caused_by=caused_by)
