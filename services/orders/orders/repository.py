"""Orders in the database: the placement insert, an order's saga state under its row lock and the
storing of a decision, and the reads that answer the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Row, Select, String, Table, bindparam, func, insert, literal_column, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from contracts import OrderLine
from orders.domain import OrderStatus, PricedLine
from orders.models import Order, OrderEvent, OrderItem
from orders.saga import Decision, OrderState, SeenRefund, Shipment
from orders.schemas import OrderItemOut, OrderOut, ShipmentOut, ShippingAddress, TimelineEntry

orders_table = cast(Table, Order.__table__)
items_table = cast(Table, OrderItem.__table__)
events_table = cast(Table, OrderEvent.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- placing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewOrder:
    id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    lines: list[PricedLine]
    shipping_address: dict[str, str] | None
    idempotency_key: str | None
    reason: str
    now: datetime
    expires_at: datetime


def insert_order(session: Session, order: NewOrder) -> Decimal:
    """Order, lines and first timeline entry; returns total_amount, the database's SUM of the lines
    just inserted, so it can never disagree with them."""
    if session.get_bind().dialect.name == "postgresql" and order.lines:
        return _insert_order_postgresql(session, order)
    return _insert_order_portable(session, order)


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
            " INSERT INTO orders (id, user_id, status, currency, total_amount, refunded_amount, idempotency_key,"
            " shipping_address, created_at, updated_at, expires_at)"
            " SELECT %(id)s::uuid, %(user_id)s::uuid, %(status)s, %(currency)s,"
            " COALESCE(SUM(line_total), 0), 0, %(key)s, %(address)s::json, %(now)s, %(now)s, %(expires_at)s"
            " FROM lines RETURNING total_amount"
        )
        _PG_PLACE_SQL[count] = sql
    return sql


def _insert_order_postgresql(session: Session, order: NewOrder) -> Decimal:
    params: dict[str, object] = {
        "id": str(order.id),
        "user_id": str(order.user_id),
        "status": OrderStatus.PENDING_PAYMENT.value,
        "currency": order.currency,
        "key": order.idempotency_key,
        "address": json.dumps(order.shipping_address) if order.shipping_address is not None else None,
        "reason": order.reason,
        "now": order.now,
        "expires_at": order.expires_at,
    }
    for i, line in enumerate(order.lines):
        params[f"p{i}"] = str(line.product_id)
        params[f"s{i}"] = line.sku
        params[f"n{i}"] = line.name
        params[f"u{i}"] = line.unit_price
        params[f"q{i}"] = line.quantity
        params[f"t{i}"] = line.line_total
    row = session.connection().exec_driver_sql(_pg_place_sql(len(order.lines)), params).one()
    return cast(Decimal, row[0])


def _insert_order_portable(session: Session, order: NewOrder) -> Decimal:
    """SQLite (all-in-one mode): the order with a zero total, its lines, then total_amount := SUM."""
    session.execute(
        insert(orders_table).values(
            id=order.id,
            user_id=order.user_id,
            status=OrderStatus.PENDING_PAYMENT.value,
            currency=order.currency,
            total_amount=0,
            refunded_amount=0,
            idempotency_key=order.idempotency_key,
            shipping_address=order.shipping_address,
            created_at=order.now,
            updated_at=order.now,
            expires_at=order.expires_at,
        )
    )
    if order.lines:
        session.execute(
            insert(items_table),
            [
                {
                    "order_id": order.id,
                    "product_id": line.product_id,
                    "position": position,
                    "sku": line.sku,
                    "name": line.name,
                    "unit_price": line.unit_price,
                    "quantity": line.quantity,
                    "line_total": line.line_total,
                }
                for position, line in enumerate(order.lines)
            ],
        )
    session.execute(
        insert(events_table).values(
            order_id=order.id, status=OrderStatus.PENDING_PAYMENT.value, reason=order.reason, at=order.now
        )
    )
    line_sum = (
        select(func.coalesce(func.sum(items_table.c.line_total), 0))
        .where(items_table.c.order_id == order.id)
        .scalar_subquery()
    )
    return session.execute(
        update(orders_table)
        .where(orders_table.c.id == order.id)
        .values(total_amount=line_sum)
        .returning(orders_table.c.total_amount)
    ).scalar_one()


# --- the saga's state -------------------------------------------------------------------------------------


def lock_order(session: Session, order_id: uuid.UUID) -> Order | None:
    """The order row under a lock, so facts about one order are decided one after another."""
    return session.scalars(select(Order).where(Order.id == order_id).with_for_update()).one_or_none()


_LOCK_ORDER_ROW = select(orders_table).where(orders_table.c.id == bindparam("order_id")).with_for_update()


def lock_order_row(session: Session, order_id: uuid.UUID) -> Row[Any] | None:
    """The same as a Core row, for the saga's handlers: they only decide and store (see store), and an
    ORM object (its identity map entry, its flush) costs more than the handler's SQL."""
    return session.connection().execute(_LOCK_ORDER_ROW, {"order_id": order_id}).first()


def claim_orders(session: Session, query: Select[Order], batch: int) -> Sequence[Order]:
    """Rows a job works on; SKIP LOCKED lets replicas share the work instead of queueing on it."""
    return session.scalars(query.limit(batch).with_for_update(skip_locked=True)).all()


def state_of(order: Order | Row[Any]) -> OrderState:
    shipment = None
    if order.shipped_at is not None:
        shipment = Shipment(
            order.shipment_carrier or "",
            order.shipment_tracking_number or "",
            aware(order.shipped_at),
            aware(order.delivered_at) if order.delivered_at is not None else None,
        )
    return OrderState(
        order_id=order.id,
        user_id=order.user_id,
        status=OrderStatus(order.status),
        total_amount=order.total_amount,
        currency=order.currency,
        payment_id=order.payment_id,
        payment_provider=order.payment_provider,
        refunded_amount=order.refunded_amount,
        refunds_seen=tuple(_seen_refund(r) for r in order.refunds_seen or ()),
        ships=order.shipping_address is not None,
        shipment=shipment,
    )


def _seen_refund(stored: dict[str, Any]) -> SeenRefund:
    refunded = stored.get("refunded")
    return SeenRefund(
        uuid.UUID(stored["payment_id"]),
        Decimal(refunded) if refunded is not None else None,
        bool(stored.get("fully", True)),
        str(stored.get("reason", "")),
    )


def _stored_refund(refund: SeenRefund) -> dict[str, Any]:
    refunded = f"{refund.refunded:.2f}" if refund.refunded is not None else None
    return {"payment_id": str(refund.payment_id), "refunded": refunded, "fully": refund.fully, "reason": refund.reason}


def store(session: Session, order: Order | Row[Any], decision: Decision, now: datetime) -> None:
    """Write what the decision changed into the locked row (an ORM object, or a Core row by an UPDATE),
    and its timeline entries."""
    changes = _changed_columns(state_of(order), decision.state, now)
    connection = session.connection()
    if (
        changes
        and len(decision.timeline) == 1
        and not isinstance(order, Order)
        and connection.dialect.name == "postgresql"
    ):
        # Both in one statement (the timeline INSERT as a CTE of the UPDATE): nearly every saga event
        # moves an order and adds one entry, and each statement is a round trip under the row's lock.
        [entry] = decision.timeline
        params = {**changes, "order_id_": order.id, "at_": now}
        params["timeline_status"], params["timeline_reason"] = entry.status.value, entry.reason
        connection.execute(_update_with_timeline(tuple(changes)), params)
        return
    if changes:
        if isinstance(order, Order):
            for column, value in changes.items():
                setattr(order, column, value)
        else:
            connection.execute(_update_of(tuple(changes)), {**changes, "order_id_": order.id})
    if decision.timeline:
        connection.execute(
            _INSERT_TIMELINE,
            [
                {"order_id": order.id, "status": n.status.value, "reason": n.reason, "at": now}
                for n in decision.timeline
            ],
        )


_INSERT_TIMELINE = insert(events_table)
# One UPDATE per set of changed columns (a handful of sets), built once: the saga stores every order it
# moves, and a statement built per call is built and hashed for the compiled cache every time.
_UPDATES: dict[tuple[str, ...], Any] = {}


def _update_of(columns: tuple[str, ...]) -> Any:
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = (
            update(orders_table)
            .where(orders_table.c.id == bindparam("order_id_"))
            .values({column: bindparam(column, type_=orders_table.c[column].type) for column in columns})
        )
        _UPDATES[columns] = statement
    return statement


_UPDATES_WITH_TIMELINE: dict[tuple[str, ...], Any] = {}


def _update_with_timeline(columns: tuple[str, ...]) -> Any:
    statement = _UPDATES_WITH_TIMELINE.get(columns)
    if statement is None:
        # INSERT ... SELECT of bound values rather than VALUES: SQLAlchemy cannot cache the compiled form
        # of a VALUES given as a list, and compiling for every event costs more than the round trip.
        entry = select(
            bindparam("order_id_", type_=events_table.c.order_id.type),
            bindparam("timeline_status", type_=events_table.c.status.type),
            bindparam("timeline_reason", type_=events_table.c.reason.type),
            bindparam("at_", type_=events_table.c.at.type),
        )
        timeline = insert(events_table).from_select(["order_id", "status", "reason", "at"], entry).cte("timeline")
        statement = _update_of(columns).add_cte(timeline)
        _UPDATES_WITH_TIMELINE[columns] = statement
    return statement


def _changed_columns(before: OrderState, after: OrderState, now: datetime) -> dict[str, Any]:
    if after == before:
        return {}
    changes: dict[str, Any] = {
        "status": after.status.value,
        "payment_id": after.payment_id,
        "payment_provider": after.payment_provider,
        "refunded_amount": after.refunded_amount,
        "updated_at": now,
    }
    if after.refunds_seen != before.refunds_seen:
        changes["refunds_seen"] = [_stored_refund(r) for r in after.refunds_seen] or None
    if after.shipment != before.shipment and after.shipment is not None:
        changes["shipment_carrier"] = after.shipment.carrier
        changes["shipment_tracking_number"] = after.shipment.tracking_number
        changes["shipped_at"] = after.shipment.shipped_at
        changes["delivered_at"] = after.shipment.delivered_at
    return changes


def order_lines(session: Session, order_id: uuid.UUID) -> list[OrderLine]:
    rows = session.execute(
        select(items_table).where(items_table.c.order_id == order_id).order_by(items_table.c.position)
    ).all()
    return [
        OrderLine(product_id=r.product_id, sku=r.sku, name=r.name, unit_price=r.unit_price, quantity=r.quantity)
        for r in rows
    ]


# --- reading ----------------------------------------------------------------------------------------------

# The read customers poll while they wait for their order: Core rows from statements built once.
_ONE_ORDER = select(orders_table).where(orders_table.c.id == bindparam("order_id"))
_ONE_ORDERS_ITEMS = (
    select(items_table).where(items_table.c.order_id == bindparam("order_id")).order_by(items_table.c.position)
)
_ONE_ORDERS_TIMELINE = (
    select(events_table.c.status, events_table.c.at, events_table.c.reason)
    .where(events_table.c.order_id == bindparam("order_id"))
    .order_by(events_table.c.id)
)


def _order_json_array(table: Table, order_by: Any, label: str, **columns: Any) -> Any:
    """The order's rows of `table` as one JSON array of objects (`columns`: key -> column), in
    `order_by` order; an empty array when it has none."""
    fields: list[Any] = []
    for key, column in columns.items():
        fields += [literal_column(f"'{key}'"), column]
    rows = func.json_agg(aggregate_order_by(func.json_build_object(*fields), order_by))
    return (
        select(func.coalesce(rows, literal_column("'[]'::json")))
        .where(table.c.order_id == orders_table.c.id)
        .scalar_subquery()
        .label(label)
    )


# On PostgreSQL the same read is one statement: the items and the timeline come as JSON arrays beside the
# order's row (amounts as text, so that no float ever holds money).
_ONE_ORDER_WHOLE = select(
    orders_table,
    _order_json_array(
        items_table,
        items_table.c.position,
        "items_json",
        product_id=items_table.c.product_id,
        sku=items_table.c.sku,
        name=items_table.c.name,
        unit_price=sql_cast(items_table.c.unit_price, String),
        quantity=items_table.c.quantity,
        line_total=sql_cast(items_table.c.line_total, String),
    ),
    _order_json_array(
        events_table,
        events_table.c.id,
        "timeline_json",
        status=events_table.c.status,
        at=events_table.c.at,
        reason=events_table.c.reason,
    ),
).where(orders_table.c.id == bindparam("order_id"))


def read_order(session: Session, order_id: uuid.UUID, user_id: uuid.UUID | None) -> OrderOut | None:
    """One order as the API answers it; None if there is none, or it is not `user_id`'s (None: anyone's)."""
    params = {"order_id": order_id}
    if session.get_bind().dialect.name == "postgresql":
        whole = session.execute(_ONE_ORDER_WHOLE, params).first()
        if whole is None or (user_id is not None and whole.user_id != user_id):
            return None
        return _order_out(
            whole,
            [OrderItemOut.model_validate(item) for item in whole.items_json],
            [TimelineEntry.model_validate(entry) for entry in whole.timeline_json],
        )
    order = session.execute(_ONE_ORDER, params).first()
    if order is None or (user_id is not None and order.user_id != user_id):
        return None
    items = [_item_out(row) for row in session.execute(_ONE_ORDERS_ITEMS, params)]
    timeline = [
        TimelineEntry(status=row.status, at=aware(row.at), reason=row.reason)
        for row in session.execute(_ONE_ORDERS_TIMELINE, params)
    ]
    return _order_out(order, items, timeline)


def _item_out(row: Any) -> OrderItemOut:
    return OrderItemOut(
        product_id=row.product_id,
        sku=row.sku,
        name=row.name,
        unit_price=row.unit_price,
        quantity=row.quantity,
        line_total=row.line_total,
    )


def load_orders(session: Session, orders: Sequence[Order]) -> list[OrderOut]:
    """Orders with their items and timelines in three queries, whatever the number of orders."""
    if not orders:
        return []
    ids = [order.id for order in orders]
    items: dict[uuid.UUID, list[OrderItemOut]] = {order_id: [] for order_id in ids}
    for row in session.execute(
        select(items_table).where(items_table.c.order_id.in_(ids)).order_by(items_table.c.position)
    ):
        items[row.order_id].append(_item_out(row))
    timeline: dict[uuid.UUID, list[TimelineEntry]] = {order_id: [] for order_id in ids}
    for row in session.execute(
        select(events_table).where(events_table.c.order_id.in_(ids)).order_by(events_table.c.id)
    ):
        timeline[row.order_id].append(TimelineEntry(status=row.status, at=aware(row.at), reason=row.reason))
    return [_order_out(order, items[order.id], timeline[order.id]) for order in orders]


def _order_out(order: Order | Row[Any], items: list[OrderItemOut], timeline: list[TimelineEntry]) -> OrderOut:
    shipment = state_of(order).shipment
    return OrderOut(
        id=order.id,
        user_id=order.user_id,
        status=OrderStatus(order.status),
        currency=order.currency,
        total_amount=order.total_amount,
        refunded_amount=order.refunded_amount,
        items=items,
        shipping_address=ShippingAddress.model_validate(order.shipping_address) if order.shipping_address else None,
        shipment=ShipmentOut(
            carrier=shipment.carrier,
            tracking_number=shipment.tracking_number,
            shipped_at=shipment.shipped_at,
            delivered_at=shipment.delivered_at,
        )
        if shipment is not None
        else None,
        timeline=timeline,
        created_at=aware(order.created_at),
        updated_at=aware(order.updated_at),
        expires_at=aware(order.expires_at),
    )


def placed_order_out(order: NewOrder, total: Decimal) -> OrderOut:
    """The answer to a placement, from what was just inserted (no read back)."""
    return OrderOut(
        id=order.id,
        user_id=order.user_id,
        status=OrderStatus.PENDING_PAYMENT,
        currency=order.currency,
        total_amount=total,
        refunded_amount=Decimal("0.00"),
        items=[
            OrderItemOut(
                product_id=line.product_id,
                sku=line.sku,
                name=line.name,
                unit_price=line.unit_price,
                quantity=line.quantity,
                line_total=line.line_total,
            )
            for line in order.lines
        ],
        shipping_address=ShippingAddress.model_validate(order.shipping_address) if order.shipping_address else None,
        shipment=None,
        timeline=[TimelineEntry(status=OrderStatus.PENDING_PAYMENT, at=order.now, reason=order.reason)],
        created_at=order.now,
        updated_at=order.now,
        expires_at=order.expires_at,
    )


_WITH_KEY = select(Order).where(Order.user_id == bindparam("user_id"), Order.idempotency_key == bindparam("key"))


def find_by_idempotency_key(session: Session, user_id: uuid.UUID, key: str) -> OrderOut | None:
    order = session.scalars(_WITH_KEY, {"user_id": user_id, "key": key}).one_or_none()
    return load_orders(session, [order])[0] if order else None
