"""Use cases of the catalogue: products, their listing, categories and the lookup for other services.
Each route's use case is one unit of work and commits; every change of a product bumps its version in
the changing statement and emits ProductChanged in the same transaction (stock use cases: stock.py).

Products are read and written as Core rows (catalog.models.PRODUCT_COLUMNS), from statements built once
where their shape does not depend on the request."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from catalog import domain
from catalog.changes import emit_product_changed
from catalog.models import MOVEMENTS, PRODUCT_COLUMNS, PRODUCTS, search_document
from catalog.schemas import ProductCreate, ProductFilters, ProductUpdate
from shopkit.problems import Conflict, NotFound
from shopkit.uow import UnitOfWork

SORTS: dict[str, Sequence[Any]] = {
    "price": (PRODUCTS.c.price.asc(), PRODUCTS.c.id),
    "-price": (PRODUCTS.c.price.desc(), PRODUCTS.c.id),
    "name": (PRODUCTS.c.name.asc(), PRODUCTS.c.id),
    "-created_at": (PRODUCTS.c.created_at.desc(), PRODUCTS.c.id),
}

_PRODUCT = select(*PRODUCT_COLUMNS).where(PRODUCTS.c.id == bindparam("id"))
_LOCKED_PRODUCT = _PRODUCT.with_for_update()
_INSERT_PRODUCT = insert(PRODUCTS).returning(*PRODUCT_COLUMNS)
INSERT_MOVEMENT = insert(MOVEMENTS)
# Orders reads through here what it has not heard of yet: each product as its ProductChanged carries it.
_LOOKUP = (
    select(
        PRODUCTS.c.id.label("product_id"),
        *(PRODUCTS.c[name] for name in ("sku", "name", "price", "currency", "is_active", "stock", "version")),
        PRODUCTS.c.category,
        PRODUCTS.c.images,
    )
    .where(PRODUCTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(PRODUCTS.c.id)
)
_CATEGORIES = (
    select(PRODUCTS.c.category.label("slug"), func.count().label("product_count"))
    .where(PRODUCTS.c.is_active.is_(True), PRODUCTS.c.category.is_not(None))
    .group_by(PRODUCTS.c.category)
    .order_by(PRODUCTS.c.category)
)


def now() -> datetime:
    return datetime.now(UTC)


def create_product(uow: UnitOfWork, data: ProductCreate) -> Any:
    at = now()
    connection = uow.session.connection()
    values = {**data.model_dump(), "id": uuid.uuid4(), "is_active": True, "version": 1}
    try:
        row = connection.execute(_INSERT_PRODUCT, {**values, "created_at": at, "updated_at": at}).one()
    except IntegrityError as exc:
        # The unique index decides, also between two admins creating the same sku at once.
        uow.rollback()
        raise Conflict(f"a product with sku {data.sku!r} already exists") from exc
    if row.stock:
        connection.execute(
            INSERT_MOVEMENT,
            {
                "id": uuid.uuid4(),
                "product_id": row.id,
                "delta": row.stock,
                "cause": "initial",
                "order_id": None,
                "reason": "stock at creation",
                "stock_after": row.stock,
                "created_at": at,
            },
        )
    emit_product_changed(uow, row)
    uow.commit()
    return row


def get_product(uow: UnitOfWork, product_id: uuid.UUID, *, include_archived: bool) -> Any:
    row = uow.session.connection().execute(_PRODUCT, {"id": product_id}).one_or_none()
    if row is None or (not row.is_active and not include_archived):
        raise NotFound("no such product")
    return row


def list_products(uow: UnitOfWork, filters: ProductFilters) -> tuple[Sequence[Any], int]:
    """A page of products and the total: one query, the total counted alongside the page's rows."""
    query = select(*PRODUCT_COLUMNS, func.count().over().label("total"))
    if not filters.include_archived:
        query = query.where(PRODUCTS.c.is_active.is_(True))
    query = _filtered(query, filters, uow.session.get_bind().dialect.name)
    page = query.order_by(*SORTS[filters.sort]).limit(filters.page_size).offset((filters.page - 1) * filters.page_size)
    connection = uow.session.connection()
    rows = connection.execute(page).all()
    if rows:
        return rows, rows[0].total
    # Past the last page (or nothing matches) there is no row to carry the total: count apart.
    counted = query.with_only_columns(func.count(), maintain_column_froms=True).order_by(None)
    return rows, connection.execute(counted).scalar_one() if filters.page > 1 else 0


def _filtered(query: Select[Any], filters: ProductFilters, dialect: str) -> Select[Any]:
    if filters.q:
        query = query.where(_matches(filters.q, dialect))
    if filters.min_price is not None:
        query = query.where(PRODUCTS.c.price >= filters.min_price)
    if filters.max_price is not None:
        query = query.where(PRODUCTS.c.price <= filters.max_price)
    if filters.in_stock is True:
        query = query.where(PRODUCTS.c.stock > 0)
    elif filters.in_stock is False:
        query = query.where(PRODUCTS.c.stock == 0)
    if filters.category is not None:
        query = query.where(PRODUCTS.c.category == filters.category)
    return query


def _matches(q: str, dialect: str) -> Any:
    products = PRODUCTS.c
    if dialect == "postgresql":
        # Full-text prefix search over the GIN index (no pg_trgm: it needs a superuser to install, and
        # the service's role is not one); an exact sku also matches, through the unique index.
        terms = domain.search_terms(q)
        if not terms:
            return products.sku == q
        query = func.to_tsquery("simple", domain.prefix_tsquery(terms))
        return or_(search_document().bool_op("@@")(query), products.sku == q)
    # SQLite (all-in-one mode): every word must appear somewhere in name, sku or description.
    return and_(
        *(
            or_(
                products.name.icontains(word, autoescape=True),
                products.sku.icontains(word, autoescape=True),
                products.description.icontains(word, autoescape=True),
            )
            for word in q.split()
        )
    )


def update_product(uow: UnitOfWork, product_id: uuid.UUID, changes: ProductUpdate) -> Any:
    return _change(uow, product_id, changes.model_dump(exclude_unset=True))


def archive_product(uow: UnitOfWork, product_id: uuid.UUID) -> None:
    _change(uow, product_id, {"is_active": False})


def _change(uow: UnitOfWork, product_id: uuid.UUID, values: dict[str, Any]) -> Any:
    """Apply what differs from the row (locked while compared), with one version more; changing
    nothing is no change: no new version, no event."""
    connection = uow.session.connection()
    row = connection.execute(_LOCKED_PRODUCT, {"id": product_id}).one_or_none()
    if row is None:
        raise NotFound("no such product")
    changed = {key: value for key, value in values.items() if getattr(row, key) != value}
    if changed:
        row = connection.execute(
            update(PRODUCTS)
            .where(PRODUCTS.c.id == product_id)
            .values(**changed, version=PRODUCTS.c.version + 1, updated_at=now())
            .returning(*PRODUCT_COLUMNS)
        ).one()
        emit_product_changed(uow, row)
    uow.commit()
    return row


def list_categories(uow: UnitOfWork) -> Sequence[Any]:
    """Each category of the active products with how many are in it, by slug."""
    return uow.session.connection().execute(_CATEGORIES).all()


def lookup_products(uow: UnitOfWork, ids: list[uuid.UUID]) -> Sequence[Any]:
    """The products that exist among `ids` (archived ones too), each as its ProductChanged says."""
    return uow.session.connection().execute(_LOOKUP, {"ids": list(set(ids))}).all()
