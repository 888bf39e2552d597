"""Use cases of the orders service, each a function of a unit of work, called alike by routes, event
handlers and jobs. What an order becomes is saga.decide's call; these load the order under its row
lock, decide, store and emit, and map refusals to problems. Routes and jobs commit; handlers leave
the commit to the kit's consumer, which records the inbox in the same transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.exc import IntegrityError

from contracts import OrderLine, OrderPlaced, ProductChanged
from orders import repository
from orders.domain import (
    CatalogProduct,
    InsufficientStock,
    InvalidLines,
    MixedCurrencies,
    OrderStatus,
    PricedLine,
    RequestedLine,
    UnknownProducts,
    merge_lines,
    price_lines,
)
from orders.models import Order
from orders.products import apply_product_changes, read_products
from orders.repository import NewOrder, utcnow
from orders.saga import (
    WAITING,
    CancelRequested,
    Decision,
    DeliverRequested,
    Fact,
    PaymentTimedOut,
    Redrive,
    Refused,
    ShipRequested,
    decide,
)
from orders.schemas import OrderOut, OrderPage
from shopkit.auth import Principal
from shopkit.problems import Conflict, Forbidden, NotFound, Problem, Unprocessable
from shopkit.signals import CommitSignal
from shopkit.uow import UnitOfWork

log = logging.getLogger("orders.service")

# Wakes the customers long-polling an order (api.get_order) once a change to it commits; the app listens
# to its sessions (app.py).
ORDER_CHANGED = CommitSignal("orders.order-changed")

# Asks the catalog for products the view does not hold (catalog.CatalogLookup in the service).
ProductLookup = Callable[[Sequence[uuid.UUID]], list[ProductChanged]]


# --- the saga -------------------------------------------------------------------------------------------


def advance_order(uow: UnitOfWork, order_id: uuid.UUID, fact: Fact) -> Decision | None:
    """Apply one fact to one order under its row lock; None when there is no such order."""
    order = repository.lock_order_row(uow.session, order_id)
    if order is None:
        return None
    return _apply(uow, order, fact)


def _apply(uow: UnitOfWork, order: Order | Row[Any], fact: Fact) -> Decision:
    before = order.status
    decision = decide(repository.state_of(order), fact)
    repository.store(uow.session, order, decision, utcnow())
    ORDER_CHANGED.mark(uow, [order.id])
    for message in decision.messages:
        uow.emit(message, correlation_id=order.id)
    if decision.state.status != before:
        log.info("order %s", decision.state.status, extra={"order_id": str(order.id), "from": str(before)})
    return decision


def _act(uow: UnitOfWork, order: Order, fact: Fact) -> OrderOut:
    """A person's action (cancel, ship, deliver): refused is 409; done is committed and answered."""
    try:
        _apply(uow, order, fact)
    except Refused as exc:
        raise Conflict(str(exc)) from exc
    uow.commit()
    return repository.load_orders(uow.session, [order])[0]


def cancel_order(uow: UnitOfWork, order_id: uuid.UUID, principal: Principal) -> OrderOut:
    order = repository.lock_order(uow.session, order_id)
    if order is None or not (principal.is_admin or order.user_id == principal.user_id):
        raise NotFound("no such order")
    if order.user_id != principal.user_id:
        raise Forbidden("only the customer who placed an order can cancel it")
    return _act(uow, order, CancelRequested())


def ship_order(uow: UnitOfWork, order_id: uuid.UUID, *, carrier: str, tracking_number: str) -> OrderOut:
    """An admin hands a confirmed order with a shipping address to a carrier."""
    order = repository.lock_order(uow.session, order_id)
    if order is None:
        raise NotFound("no such order")
    return _act(uow, order, ShipRequested(carrier, tracking_number, utcnow()))


def deliver_order(uow: UnitOfWork, order_id: uuid.UUID) -> OrderOut:
    order = repository.lock_order(uow.session, order_id)
    if order is None:
        raise NotFound("no such order")
    return _act(uow, order, DeliverRequested(utcnow()))


def cancel_expired_orders(uow: UnitOfWork, *, batch: int = 100, now: datetime | None = None) -> int:
    """The payment timeout (a job): cancel orders whose payment window closed."""
    now = now or utcnow()
    expired = repository.claim_orders(
        uow.session,
        select(Order)
        .where(Order.status == OrderStatus.PENDING_PAYMENT.value, Order.expires_at <= now)
        .order_by(Order.expires_at),
        batch,
    )
    for order in expired:
        _apply(uow, order, PaymentTimedOut())
    uow.commit()
    if expired:
        log.info("cancelled %s expired orders", len(expired))
    return len(expired)


def redrive_stuck_orders(uow: UnitOfWork, *, stuck_after: float, batch: int = 100, now: datetime | None = None) -> int:
    """The sweeper (a job): ask again for what an order waiting too long in `paid` or `refund_pending`
    waits on; last_redriven_at keeps it to once per stuck_after period."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stuck_after)
    stuck = repository.claim_orders(
        uow.session,
        select(Order)
        .where(
            Order.status.in_([s.value for s in WAITING]),
            func.coalesce(Order.last_redriven_at, Order.updated_at) <= cutoff,
        )
        .order_by(Order.updated_at),
        batch,
    )
    for order in stuck:
        order.last_redriven_at = now
        lines: list[OrderLine] = []
        if order.status == OrderStatus.PAID:
            lines = repository.order_lines(uow.session, order.id)
        if not _apply(uow, order, Redrive(tuple(lines))).messages:
            log.error("stuck order with nothing to re-drive", extra={"order_id": str(order.id)})
    uow.commit()
    if stuck:
        log.info("re-drove %s stuck orders", len(stuck))
    return len(stuck)


# --- the product view -----------------------------------------------------------------------------------


def record_product_changes(uow: UnitOfWork, changes: Sequence[ProductChanged]) -> None:
    apply_product_changes(uow.session, changes)


# --- placing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRequest:
    user_id: uuid.UUID
    lines: list[RequestedLine]
    shipping_address: dict[str, str] | None = None
    idempotency_key: str | None = None


def place_order(uow: UnitOfWork, catalog: ProductLookup, request: OrderRequest, *, payment_timeout: float) -> OrderOut:
    """Order, lines, timeline and OrderPlaced in one short transaction, priced from the product view.
    The same Idempotency-Key from the same user answers the first order, whatever the stock now: the
    key is looked up only when this request cannot be placed (a refusal, or the key's unique index),
    so a new key costs no read."""
    try:
        return _place_order(uow, catalog, request, payment_timeout=payment_timeout)
    except (Problem, IntegrityError):
        uow.rollback()
        if request.idempotency_key is None:
            raise
        # Refused now, or lost the race against a request with the same key: the first order answers.
        earlier = repository.find_by_idempotency_key(uow.session, request.user_id, request.idempotency_key)
        if earlier is None:
            raise
        return earlier


def _place_order(uow: UnitOfWork, catalog: ProductLookup, request: OrderRequest, *, payment_timeout: float) -> OrderOut:
    session = uow.session
    try:
        lines = merge_lines(request.lines)
    except InvalidLines as exc:
        raise Unprocessable(str(exc)) from exc
    currency, priced = _price(lines, _products(uow, catalog, [line.product_id for line in lines]))
    now = utcnow()
    order = NewOrder(
        id=uuid.uuid4(),
        user_id=request.user_id,
        currency=currency,
        lines=priced,
        shipping_address=request.shipping_address,
        idempotency_key=request.idempotency_key,
        reason="order placed",
        now=now,
        expires_at=now + timedelta(seconds=payment_timeout),
    )
    total = repository.insert_order(session, order)
    uow.emit(_order_placed(order, total), correlation_id=order.id)
    uow.commit()
    log.info("order placed", extra={"order_id": str(order.id)})
    return repository.placed_order_out(order, total)


def _products(uow: UnitOfWork, catalog: ProductLookup, ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogProduct]:
    """From the view; what it has not heard of is read through from the catalog once and stored as
    its ProductChanged would be."""
    products = read_products(uow.session, ids)
    missing = [i for i in ids if i not in products]
    if missing:
        uow.rollback()  # no connection held while the catalog answers
        learnt = catalog(missing)
        if learnt:
            apply_product_changes(uow.session, learnt)
            uow.commit()
            products = read_products(uow.session, ids)
    return products


def _price(lines: list[RequestedLine], products: dict[uuid.UUID, CatalogProduct]) -> tuple[str, list[PricedLine]]:
    try:
        return price_lines(lines, products)
    except UnknownProducts as exc:
        raise Unprocessable(str(exc), product_ids=[str(p) for p in exc.product_ids]) from exc
    except (MixedCurrencies, InvalidLines) as exc:
        raise Unprocessable(str(exc)) from exc
    except InsufficientStock as exc:
        raise Conflict(
            str(exc),
            shortages=[{"product_id": str(p), "requested": want, "available": have} for p, want, have in exc.shortages],
        ) from exc


def _order_placed(order: NewOrder, total: Decimal) -> OrderPlaced:
    return OrderPlaced(
        order_id=order.id,
        user_id=order.user_id,
        currency=order.currency,
        total_amount=total,
        items=[
            OrderLine(
                product_id=line.product_id,
                sku=line.sku,
                name=line.name,
                unit_price=line.unit_price,
                quantity=line.quantity,
            )
            for line in order.lines
        ],
        expires_at=order.expires_at.isoformat(),
    )


# --- reading --------------------------------------------------------------------------------------------


def get_order(uow: UnitOfWork, order_id: uuid.UUID, principal: Principal) -> OrderOut:
    order = repository.read_order(uow.session, order_id, None if principal.is_admin else principal.user_id)
    if order is None:
        raise NotFound("no such order")
    return order


def list_orders(
    uow: UnitOfWork,
    principal: Principal,
    *,
    page: int,
    page_size: int,
    status: OrderStatus | None = None,
    user_id: uuid.UUID | None = None,
) -> OrderPage:
    filters = []
    if not principal.is_admin:
        filters.append(Order.user_id == principal.user_id)
    if user_id is not None:
        filters.append(Order.user_id == user_id)
    if status is not None:
        filters.append(Order.status == status.value)
    session = uow.session
    total = session.scalar(select(func.count()).select_from(Order).where(*filters)) or 0
    orders = session.scalars(
        select(Order)
        .where(*filters)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    return OrderPage(items=repository.load_orders(session, orders), total=total, page=page, page_size=page_size)
