"""Use cases of the catalog. Those behind a route are one unit of work each and commit; those behind an
event handler write into the handler's unit of work, which the kit commits with the inbox record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from catalog import domain
from catalog.models import Product, StockDecision, StockMovement, search_document
from catalog.schemas import ProductCreate, ProductFilters, ProductUpdate, StockAdjustment
from contracts import OrderLine, PaymentRefunded, PaymentSucceeded, Shortage, StockCommitted, StockRejected
from shopkit.db import upsert_insert
from shopkit.problems import Conflict, NotFound
from shopkit.uow import UnitOfWork

# Core tables for the stock path: fewer statements and less ORM work while rows are locked.
PRODUCTS = cast(Table, Product.__table__)
MOVEMENTS = cast(Table, StockMovement.__table__)
DECISIONS = cast(Table, StockDecision.__table__)

SORTS: dict[str, Sequence[Any]] = {
    "price": (Product.price.asc(), Product.id),
    "-price": (Product.price.desc(), Product.id),
    "name": (Product.name.asc(), Product.id),
    "-created_at": (Product.created_at.desc(), Product.id),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _movement(
    product: Product, delta: int, cause: str, *, order_id: uuid.UUID | None = None, reason: str | None = None
) -> StockMovement:
    return StockMovement(
        id=uuid.uuid4(),
        product_id=product.id,
        delta=delta,
        cause=cause,
        order_id=order_id,
        reason=reason,
        stock_after=product.stock,
        created_at=_now(),
    )


# --- products --------------------------------------------------------------------------------------


def create_product(uow: UnitOfWork, data: ProductCreate) -> Product:
    session = uow.session
    if session.scalar(select(Product.id).where(Product.sku == data.sku)) is not None:
        raise Conflict(f"a product with sku {data.sku!r} already exists")
    now = _now()
    product = Product(id=uuid.uuid4(), **data.model_dump(), is_active=True, created_at=now, updated_at=now)
    session.add(product)
    if product.stock:
        session.add(_movement(product, product.stock, "initial", reason="stock at creation"))
    try:
        uow.commit()
    except IntegrityError as exc:
        # Two admins creating the same sku at once: the unique index decides, the loser gets 409.
        uow.rollback()
        raise Conflict(f"a product with sku {data.sku!r} already exists") from exc
    return product


def get_product(uow: UnitOfWork, product_id: uuid.UUID, *, include_archived: bool) -> Product:
    product = uow.session.get(Product, product_id)
    if product is None or (not product.is_active and not include_archived):
        raise NotFound("no such product")
    return product


def list_products(uow: UnitOfWork, filters: ProductFilters) -> tuple[list[Product], int]:
    query = _filtered(select(Product).where(Product.is_active.is_(True)), filters, uow)
    total = uow.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    page = query.order_by(*SORTS[filters.sort]).limit(filters.page_size).offset((filters.page - 1) * filters.page_size)
    return list(uow.session.scalars(page)), total


def _filtered(query: Select[Any], filters: ProductFilters, uow: UnitOfWork) -> Select[Any]:
    if filters.q:
        query = query.where(_matches(filters.q, uow.session.get_bind().dialect.name))
    if filters.min_price is not None:
        query = query.where(Product.price >= filters.min_price)
    if filters.max_price is not None:
        query = query.where(Product.price <= filters.max_price)
    if filters.in_stock is True:
        query = query.where(Product.stock > 0)
    elif filters.in_stock is False:
        query = query.where(Product.stock == 0)
    return query


def _matches(q: str, dialect: str) -> Any:
    if dialect == "postgresql":
        # Full-text prefix search over the GIN index (no pg_trgm: it needs a superuser to install, and
        # the service's role is not one); an exact sku also matches, through the unique index.
        terms = domain.search_terms(q)
        if not terms:
            return Product.sku == q
        query = func.to_tsquery("simple", domain.prefix_tsquery(terms))
        return or_(search_document().bool_op("@@")(query), Product.sku == q)
    # SQLite (all-in-one mode): every word must appear somewhere in name, sku or description.
    return and_(
        *(
            or_(
                Product.name.icontains(word, autoescape=True),
                Product.sku.icontains(word, autoescape=True),
                Product.description.icontains(word, autoescape=True),
            )
            for word in q.split()
        )
    )


def update_product(uow: UnitOfWork, product_id: uuid.UUID, changes: ProductUpdate) -> Product:
    product = _locked_product(uow, product_id)
    values = changes.model_dump(exclude_unset=True)
    changed = {key: value for key, value in values.items() if getattr(product, key) != value}
    for key, value in changed.items():
        setattr(product, key, value)
    if changed:
        product.updated_at = _now()
    uow.commit()
    return product


def archive_product(uow: UnitOfWork, product_id: uuid.UUID) -> None:
    product = _locked_product(uow, product_id)
    if product.is_active:
        product.is_active = False
        product.updated_at = _now()
    uow.commit()


def adjust_stock(uow: UnitOfWork, product_id: uuid.UUID, adjustment: StockAdjustment) -> StockMovement:
    product = _locked_product(uow, product_id)
    try:
        product.stock = domain.adjusted_stock(product.stock, adjustment.delta)
    except domain.StockRuleBroken as exc:
        raise Conflict(str(exc)) from exc
    product.updated_at = _now()
    movement = _movement(product, adjustment.delta, "adjustment", reason=adjustment.reason)
    uow.session.add(movement)
    uow.commit()
    return movement


def list_movements(
    uow: UnitOfWork, product_id: uuid.UUID, *, page: int, page_size: int
) -> tuple[list[StockMovement], int]:
    get_product(uow, product_id, include_archived=True)
    where = StockMovement.product_id == product_id
    total = uow.session.scalar(select(func.count()).select_from(StockMovement).where(where)) or 0
    rows = uow.session.scalars(
        select(StockMovement)
        .where(where)
        .order_by(StockMovement.created_at.desc(), StockMovement.id)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return list(rows), total


# Orders asks this on every placement: the columns it needs, as plain rows, from a statement compiled once.
_LOOKUP = (
    select(
        PRODUCTS.c.id,
        PRODUCTS.c.sku,
        PRODUCTS.c.name,
        PRODUCTS.c.price,
        PRODUCTS.c.currency,
        PRODUCTS.c.stock,
        PRODUCTS.c.is_active,
    )
    .where(PRODUCTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(PRODUCTS.c.id)
)


def lookup_products(uow: UnitOfWork, ids: list[uuid.UUID]) -> Sequence[Any]:
    """id, sku, name, price, currency, stock and is_active of the products that exist, by id."""
    return uow.session.connection().execute(_LOOKUP, {"ids": list(set(ids))}).all()


def _locked_product(uow: UnitOfWork, product_id: uuid.UUID) -> Product:
    product = uow.session.scalar(select(Product).where(Product.id == product_id).with_for_update())
    if product is None:
        raise NotFound("no such product")
    return product


# --- stock of orders (event handlers; the kit commits) -----------------------------------------------


def commit_stock(uow: UnitOfWork, payment: PaymentSucceeded) -> None:
    """Take every line of the order from stock, or nothing, once per order; answer StockCommitted or
    StockRejected, and the same answer again for any later PaymentSucceeded of that order."""
    session = uow.session
    wanted = domain.quantities_by_product(payment.items)
    now = _now()
    # Claim the order's decision first, presumed committed. A competing delivery for the same order
    # waits here on the unique key until this transaction ends, then finds the decision and repeats it.
    if not _claim_decision(uow, payment, now):
        decision = session.get(StockDecision, payment.order_id, populate_existing=True)
        assert decision is not None  # the conflicting claim has committed
        _answer(uow, decision)
        return
    # FOR UPDATE in ascending id order (the ORDER BY sits below the row locking): orders sharing
    # products queue on them in one sequence, so they never deadlock. On SQLite the kit's BEGIN
    # IMMEDIATE already serialises writers and FOR UPDATE is not rendered. From here to the commit
    # every round trip lengthens the time others queue on these rows: keep them few.
    rows = session.execute(
        select(Product.id, Product.stock, Product.is_active)
        .where(Product.id.in_(list(wanted)))
        .order_by(Product.id)
        .with_for_update()
    ).all()
    levels = {row.id: domain.StockLevel(row.stock, row.is_active) for row in rows}
    short = domain.shortages(wanted, levels)
    if short:
        session.execute(
            update(StockDecision)
            .where(StockDecision.order_id == payment.order_id)
            .values(outcome="rejected", shortages=[s.model_dump(mode="json") for s in short])
        )
        uow.emit(
            StockRejected(order_id=payment.order_id, payment_id=payment.payment_id, shortages=short),
            correlation_id=payment.order_id,
        )
        return
    _move_stock(
        uow,
        {pid: -quantity for pid, quantity in wanted.items()},
        levels,
        "order_commit",
        order_id=payment.order_id,
        now=now,
    )
    uow.emit(
        StockCommitted(order_id=payment.order_id, payment_id=payment.payment_id, items=payment.items),
        correlation_id=payment.order_id,
    )


def _claim_decision(uow: UnitOfWork, payment: PaymentSucceeded, now: datetime) -> bool:
    values = {
        "order_id": payment.order_id,
        "outcome": "committed",
        "payment_id": payment.payment_id,
        "lines": [line.model_dump(mode="json") for line in payment.items],
        "shortages": [],
        "decided_at": now,
    }
    claim = upsert_insert(uow.session, DECISIONS)
    result: Any = uow.session.execute(claim.values(**values).on_conflict_do_nothing())
    return bool(result.rowcount)


def _move_stock(
    uow: UnitOfWork,
    deltas: dict[uuid.UUID, int],
    levels: dict[uuid.UUID, domain.StockLevel],
    cause: str,
    *,
    order_id: uuid.UUID,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Apply deltas to rows this transaction has locked, with one ledger row each (two statements for
    the whole order: the rows stay locked for as short a time as possible)."""
    after = {pid: levels[pid].stock + delta for pid, delta in deltas.items()}
    uow.session.execute(
        update(PRODUCTS).where(PRODUCTS.c.id == bindparam("pid")).values(stock=bindparam("new_stock"), updated_at=now),
        [{"pid": pid, "new_stock": stock} for pid, stock in after.items()],
    )
    uow.session.execute(
        insert(MOVEMENTS),
        [
            {
                "id": uuid.uuid4(),
                "product_id": pid,
                "delta": delta,
                "cause": cause,
                "order_id": order_id,
                "reason": reason,
                "stock_after": after[pid],
                "created_at": now,
            }
            for pid, delta in deltas.items()
        ],
    )


def _answer(uow: UnitOfWork, decision: StockDecision) -> None:
    if decision.outcome == "committed":
        uow.emit(
            StockCommitted(
                order_id=decision.order_id,
                payment_id=decision.payment_id,
                items=[OrderLine.model_validate(line) for line in decision.lines],
            ),
            correlation_id=decision.order_id,
        )
    else:
        uow.emit(
            StockRejected(
                order_id=decision.order_id,
                payment_id=decision.payment_id,
                shortages=[Shortage.model_validate(s) for s in decision.shortages],
            ),
            correlation_id=decision.order_id,
        )


def release_stock(uow: UnitOfWork, refund: PaymentRefunded) -> None:
    """Put back what the refunded payment's order took, once, and only for the payment that paid it."""
    session = uow.session
    # Locking the decision serialises two refunds of one payment: the second sees released_at.
    decision = session.scalar(select(StockDecision).where(StockDecision.order_id == refund.order_id).with_for_update())
    if (
        decision is None
        or decision.outcome != "committed"
        or decision.payment_id != refund.payment_id
        or decision.released_at is not None
    ):
        return
    wanted = domain.quantities_by_product(OrderLine.model_validate(line) for line in decision.lines)
    now = _now()
    rows = session.execute(
        select(Product.id, Product.stock, Product.is_active)
        .where(Product.id.in_(list(wanted)))
        .order_by(Product.id)
        .with_for_update()
    ).all()
    # Products are archived, never deleted: every committed line still has its row.
    levels = {row.id: domain.StockLevel(row.stock, row.is_active) for row in rows}
    _move_stock(uow, wanted, levels, "release", order_id=refund.order_id, now=now, reason=refund.reason[:500])
    decision.released_at = now
