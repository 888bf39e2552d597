"""Use cases of the orders service, each one unit of work."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts import OrderCancelled, OrderLine, OrderPlaced, PaymentSucceeded, RefundRequested
from orders.domain import OrderStatus, PricedLine, transition
from orders.models import Order, OrderEvent, OrderItem
from orders.schemas import OrderItemOut, OrderOut, OrderPage, TimelineEntry
from shopkit.auth import Principal
from shopkit.db import Database
from shopkit.problems import Conflict, Forbidden, NotFound
from shopkit.uow import unit_of_work

log = logging.getLogger("orders.service")

orders_table = cast(Table, Order.__table__)
items_table = cast(Table, OrderItem.__table__)
events_table = cast(Table, OrderEvent.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- timeline ---------------------------------------------------------------------------------------


def change_status(session: Session, order: Order, target: OrderStatus, reason: str) -> None:
    """Apply one move of the state machine (raises InvalidTransition) and record it on the timeline."""
    order.status = transition(order.status, target)
    now = utcnow()
    order.updated_at = now
    session.execute(insert(events_table).values(order_id=order.id, status=order.status, reason=reason, at=now))


def add_note(session: Session, order: Order, reason: str) -> None:
    """An event that changed nothing still leaves a trace on the timeline, under the current status."""
    session.execute(insert(events_table).values(order_id=order.id, status=order.status, reason=reason, at=utcnow()))


def lock_order(session: Session, order_id: uuid.UUID) -> Order | None:
    """The order row under a lock, so events of one order are applied one after another."""
    return session.scalars(select(Order).where(Order.id == order_id).with_for_update()).one_or_none()


def order_lines(session: Session, order_id: uuid.UUID) -> list[OrderLine]:
    rows = session.execute(
        select(items_table).where(items_table.c.order_id == order_id).order_by(items_table.c.position)
    ).all()
    return [
        OrderLine(product_id=r.product_id, sku=r.sku, name=r.name, unit_price=r.unit_price, quantity=r.quantity)
        for r in rows
    ]


# --- reading ----------------------------------------------------------------------------------------


def load_orders(session: Session, orders: Sequence[Order]) -> list[OrderOut]:
    """Orders with their items and timelines in three queries, whatever the number of orders."""
    if not orders:
        return []
    ids = [order.id for order in orders]
    items: dict[uuid.UUID, list[OrderItemOut]] = {order_id: [] for order_id in ids}
    for row in session.execute(
        select(items_table).where(items_table.c.order_id.in_(ids)).order_by(items_table.c.position)
    ):
        items[row.order_id].append(
            OrderItemOut(
                product_id=row.product_id,
                sku=row.sku,
                name=row.name,
                unit_price=row.unit_price,
                quantity=row.quantity,
                line_total=row.line_total,
            )
        )
    timeline: dict[uuid.UUID, list[TimelineEntry]] = {order_id: [] for order_id in ids}
    for row in session.execute(
        select(events_table).where(events_table.c.order_id.in_(ids)).order_by(events_table.c.id)
    ):
        timeline[row.order_id].append(TimelineEntry(status=row.status, at=aware(row.at), reason=row.reason))
    return [
        OrderOut(
            id=order.id,
            user_id=order.user_id,
            status=OrderStatus(order.status),
            currency=order.currency,
            total_amount=order.total_amount,
            items=items[order.id],
            timeline=timeline[order.id],
            created_at=aware(order.created_at),
            updated_at=aware(order.updated_at),
            expires_at=aware(order.expires_at),
        )
        for order in orders
    ]


def find_by_idempotency_key(db: Database, user_id: uuid.UUID, key: str) -> OrderOut | None:
    with unit_of_work(db) as uow:
        order = uow.session.scalars(
            select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
        ).one_or_none()
        return load_orders(uow.session, [order])[0] if order else None


def get_order(db: Database, order_id: uuid.UUID, principal: Principal) -> OrderOut:
    with unit_of_work(db) as uow:
        order = uow.session.get(Order, order_id)
        if order is None or not (principal.is_admin or order.user_id == principal.user_id):
            raise NotFound("no such order")
        return load_orders(uow.session, [order])[0]


def list_orders(
    db: Database,
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
    with unit_of_work(db) as uow:
        total = uow.session.scalar(select(func.count()).select_from(Order).where(*filters)) or 0
        orders = uow.session.scalars(
            select(Order)
            .where(*filters)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
        return OrderPage(items=load_orders(uow.session, orders), total=total, page=page, page_size=page_size)


# --- placing and cancelling -------------------------------------------------------------------------


def place_order(
    db: Database,
    *,
    user_id: uuid.UUID,
    currency: str,
    lines: list[PricedLine],
    idempotency_key: str | None,
    payment_timeout: float,
) -> OrderOut:
    """Order, lines, timeline and OrderPlaced in one short transaction. total_amount is the database's
    SUM over the lines just inserted, so it can never disagree with them."""
    order_id = uuid.uuid4()
    now = utcnow()
    expires_at = now + timedelta(seconds=payment_timeout)
    reason = "order placed"
    try:
        with unit_of_work(db) as uow:
            session = uow.session
            if db.is_sqlite or not lines:
                total = _insert_order_portable(
                    session, order_id, user_id, currency, lines, idempotency_key, reason, now, expires_at
                )
            else:
                total = _insert_order_postgresql(
                    session, order_id, user_id, currency, lines, idempotency_key, reason, now, expires_at
                )
            order_lines_ = [
                OrderLine(
                    product_id=line.product_id,
                    sku=line.sku,
                    name=line.name,
                    unit_price=line.unit_price,
                    quantity=line.quantity,
                )
                for line in lines
            ]
            uow.emit(
                OrderPlaced(
                    order_id=order_id,
                    user_id=user_id,
                    currency=currency,
                    total_amount=total,
                    items=order_lines_,
                    expires_at=expires_at.isoformat(),
                ),
                correlation_id=order_id,
            )
            uow.commit()
    except IntegrityError:
        if idempotency_key is None:
            raise
        # Lost the race against a request with the same key: the first order is the answer.
        winner = find_by_idempotency_key(db, user_id, idempotency_key)
        if winner is None:
            raise
        return winner
    return OrderOut(
        id=order_id,
        user_id=user_id,
        status=OrderStatus.PENDING_PAYMENT,
        currency=currency,
        total_amount=total,
        items=[
            OrderItemOut(
                product_id=line.product_id,
                sku=line.sku,
                name=line.name,
                unit_price=line.unit_price,
                quantity=line.quantity,
                line_total=line.line_total,
            )
            for line in lines
        ],
        timeline=[TimelineEntry(status=OrderStatus.PENDING_PAYMENT, at=now, reason=reason)],
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
    )


# Placing an order is the hot path. On PostgreSQL it is one statement: the lines and the timeline entry
# are inserted by data-modifying CTEs, and the order row is inserted with total_amount = the SUM over the
# lines that statement inserted (RETURNING), so the total is still the database's sum of the stored
# lines. The foreign keys of the lines and the timeline are checked at the end of the statement, when the
# order row exists. The SQL is plain text per number of lines (no SQLAlchemy construct built or compiled
# per call); exec_driver_sql still maps driver errors (a racing Idempotency-Key) to IntegrityError.
_PG_PLACE_SQL: dict[int, str] = {}


def _pg_place_sql(count: int) -> str:
    sql = _PG_PLACE_SQL.get(count)
    if sql is None:
        values = ", ".join(
            f"(%(id)s::uuid, %(p{i})s::uuid, {i}, %(s{i})s, %(n{i})s, %(u{i})s, %(q{i})s, %(t{i})s)"
            for i in range(count)
        )
        sql = (
            "WITH lines AS (INSERT INTO order_items"
            " (order_id, product_id, position, sku, name, unit_price, quantity, line_total)"
            f" VALUES {values} RETURNING line_total),"
            " timeline AS (INSERT INTO order_events (order_id, status, reason, at)"
            " VALUES (%(id)s::uuid, %(status)s, %(reason)s, %(now)s))"
            " INSERT INTO orders (id, user_id, status, currency, total_amount, idempotency_key,"
            " created_at, updated_at, expires_at)"
            " SELECT %(id)s::uuid, %(user_id)s::uuid, %(status)s, %(currency)s,"
            " COALESCE(SUM(line_total), 0), %(key)s, %(now)s, %(now)s, %(expires_at)s FROM lines"
            " RETURNING total_amount"
        )
        _PG_PLACE_SQL[count] = sql
    return sql


def _insert_order_postgresql(
    session: Session,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    lines: list[PricedLine],
    idempotency_key: str | None,
    reason: str,
    now: datetime,
    expires_at: datetime,
) -> Decimal:
    params: dict[str, object] = {
        "id": str(order_id),
        "user_id": str(user_id),
        "status": OrderStatus.PENDING_PAYMENT.value,
        "currency": currency,
        "key": idempotency_key,
        "reason": reason,
        "now": now,
        "expires_at": expires_at,
    }
    for i, line in enumerate(lines):
        params[f"p{i}"] = str(line.product_id)
        params[f"s{i}"] = line.sku
        params[f"n{i}"] = line.name
        params[f"u{i}"] = line.unit_price
        params[f"q{i}"] = line.quantity
        params[f"t{i}"] = line.line_total
    row = session.connection().exec_driver_sql(_pg_place_sql(len(lines)), params).one()
    return cast(Decimal, row[0])


def _insert_order_portable(
    session: Session,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    lines: list[PricedLine],
    idempotency_key: str | None,
    reason: str,
    now: datetime,
    expires_at: datetime,
) -> Decimal:
    """SQLite (all-in-one mode): the order with a zero total, its lines, then total_amount := SUM."""
    session.execute(
        insert(orders_table).values(
            id=order_id,
            user_id=user_id,
            status=OrderStatus.PENDING_PAYMENT.value,
            currency=currency,
            total_amount=0,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
        )
    )
    session.execute(
        insert(items_table),
        [
            {
                "order_id": order_id,
                "product_id": line.product_id,
                "position": position,
                "sku": line.sku,
                "name": line.name,
                "unit_price": line.unit_price,
                "quantity": line.quantity,
                "line_total": line.line_total,
            }
            for position, line in enumerate(lines)
        ],
    )
    session.execute(
        insert(events_table).values(order_id=order_id, status=OrderStatus.PENDING_PAYMENT.value, reason=reason, at=now)
    )
    line_sum = (
        select(func.coalesce(func.sum(items_table.c.line_total), 0))
        .where(items_table.c.order_id == order_id)
        .scalar_subquery()
    )
    return session.execute(
        update(orders_table)
        .where(orders_table.c.id == order_id)
        .values(total_amount=line_sum)
        .returning(orders_table.c.total_amount)
    ).scalar_one()


def cancel_order(db: Database, order_id: uuid.UUID, principal: Principal) -> OrderOut:
    with unit_of_work(db) as uow:
        order = lock_order(uow.session, order_id)
        if order is None or not (principal.is_admin or order.user_id == principal.user_id):
            raise NotFound("no such order")
        if order.user_id != principal.user_id:
            raise Forbidden("only the customer who placed an order can cancel it")
        if order.status != OrderStatus.PENDING_PAYMENT:
            raise Conflict(f"an order can be cancelled only while pending_payment; it is {order.status}")
        reason = "cancelled by the customer"
        change_status(uow.session, order, OrderStatus.CANCELLED, reason)
        uow.emit(OrderCancelled(order_id=order.id, user_id=order.user_id, reason=reason), correlation_id=order.id)
        uow.commit()
        return load_orders(uow.session, [order])[0]


# --- jobs -------------------------------------------------------------------------------------------


def cancel_expired_orders(db: Database, *, batch: int = 100, now: datetime | None = None) -> int:
    """Cancel orders whose payment window closed. SKIP LOCKED lets replicas share the work."""
    now = now or utcnow()
    with unit_of_work(db) as uow:
        expired = uow.session.scalars(
            select(Order)
            .where(Order.status == OrderStatus.PENDING_PAYMENT.value, Order.expires_at <= now)
            .order_by(Order.expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        reason = "payment timeout"
        for order in expired:
            change_status(uow.session, order, OrderStatus.CANCELLED, reason)
            uow.emit(OrderCancelled(order_id=order.id, user_id=order.user_id, reason=reason), correlation_id=order.id)
        uow.commit()
    if expired:
        log.info("cancelled %s expired orders", len(expired))
    return len(expired)


def redrive_stuck_orders(db: Database, *, stuck_after: float, batch: int = 100, now: datetime | None = None) -> int:
    """Re-emit what an order stuck in `paid` or `refund_pending` waits on. The catalog answers a
    repeated PaymentSucceeded with its recorded outcome, and payments refunds a payment once, so a
    re-drive is harmless; last_redriven_at keeps it to one per stuck_after period."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stuck_after)
    with unit_of_work(db) as uow:
        stuck = uow.session.scalars(
            select(Order)
            .where(
                Order.status.in_([OrderStatus.PAID.value, OrderStatus.REFUND_PENDING.value]),
                func.coalesce(Order.last_redriven_at, Order.updated_at) <= cutoff,
            )
            .order_by(Order.updated_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for order in stuck:
            order.last_redriven_at = now
            if order.status == OrderStatus.PAID:
                if order.payment_id is None or order.payment_provider is None:
                    log.error("paid order without a payment to re-drive", extra={"order_id": str(order.id)})
                    continue
                uow.emit(
                    PaymentSucceeded(
                        payment_id=order.payment_id,
                        order_id=order.id,
                        provider=order.payment_provider,  # type: ignore[arg-type]
                        amount=order.total_amount,
                        currency=order.currency,
                        items=order_lines(uow.session, order.id),
                    ),
                    correlation_id=order.id,
                )
            else:
                uow.emit(
                    RefundRequested(
                        order_id=order.id, payment_id=order.payment_id, reason="refund still pending (re-driven)"
                    ),
                    correlation_id=order.id,
                )
        uow.commit()
    if stuck:
        log.info("re-drove %s stuck orders", len(stuck))
    return len(stuck)
