"""Use cases of stock: adjustments and the ledger (routes, which commit), commits for paid orders and
releases for refunded ones (event handlers: they write into the handler's unit of work, which the kit
commits with the inbox records).

Stock only moves under row locks taken in ascending product id order (`SELECT ... FOR UPDATE`; on
SQLite the kit's BEGIN IMMEDIATE serialises writers instead), so transactions sharing products queue on
them in one sequence and never deadlock. From the lock to the commit every round trip lengthens the
queue on a hot product: a whole batch of orders is decided in memory and written in a handful of
statements."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeAlias

from sqlalchemy import JSON, Integer, Update, bindparam, case, cast, func, insert, select, update
from sqlalchemy.engine import Connection

from catalog import domain
from catalog.changes import emit_product_changed
from catalog.models import DECISIONS, MOVEMENTS, PRODUCT_COLUMNS, PRODUCTS
from catalog.schemas import StockAdjustment
from contracts import (
    EventData,
    OrderLine,
    PaymentRefunded,
    PaymentSucceeded,
    Shortage,
    StockCommitRequested,
    StockCommitted,
    StockRejected,
)
from shopkit import tracing
from shopkit.db import GUID, upsert_insert
from shopkit.problems import Conflict, NotFound
from shopkit.uow import UnitOfWork

log = logging.getLogger("catalog.stock")

# What asks for an order's stock: its PaymentSucceeded, or a StockCommitRequested standing for it.
StockRequest: TypeAlias = PaymentSucceeded | StockCommitRequested
# A product a batch moved: its row as locked, its stock and version now, the last request that moved it.
ProductMove: TypeAlias = tuple[Any, int, int, StockRequest]


_LOCK_PRODUCTS = (
    select(*PRODUCT_COLUMNS)
    .where(PRODUCTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(PRODUCTS.c.id)
    .with_for_update()
)
_INSERT_MOVEMENTS = insert(MOVEMENTS)
_RECORDED = select(
    DECISIONS.c.order_id, DECISIONS.c.outcome, DECISIONS.c.payment_id, DECISIONS.c.lines, DECISIONS.c.shortages
).where(DECISIONS.c.order_id.in_(bindparam("ids", expanding=True)))
_LOCK_DECISION = (
    select(DECISIONS.c.outcome, DECISIONS.c.payment_id, DECISIONS.c.lines, DECISIONS.c.released_at)
    .where(DECISIONS.c.order_id == bindparam("order_id"))
    .with_for_update()
)
_MARK_RELEASED = (
    update(DECISIONS).where(DECISIONS.c.order_id == bindparam("released_order")).values(released_at=bindparam("at"))
)
_MOVEMENTS_OF = select(MOVEMENTS).where(MOVEMENTS.c.product_id == bindparam("product_id"))
_COUNT_MOVEMENTS = select(func.count()).select_from(MOVEMENTS).where(MOVEMENTS.c.product_id == bindparam("product_id"))
_PRODUCT_EXISTS = select(PRODUCTS.c.id).where(PRODUCTS.c.id == bindparam("product_id"))


def _now() -> datetime:
    return datetime.now(UTC)


# --- adjustments and the ledger (routes) ------------------------------------------------------------


def adjust_stock(uow: UnitOfWork, product_id: uuid.UUID, adjustment: StockAdjustment) -> dict[str, Any]:
    connection = uow.session.connection()
    row = connection.execute(_LOCK_PRODUCTS, {"ids": [product_id]}).one_or_none()
    if row is None:
        raise NotFound("no such product")
    try:
        domain.adjusted_stock(row.stock, adjustment.delta)
    except domain.StockRuleBroken as exc:
        raise Conflict(str(exc)) from exc
    at = _now()
    [(stock, version)] = _apply_deltas(connection, {product_id: adjustment.delta}, at).values()
    movement = _movement(product_id, adjustment.delta, stock, "adjustment", at, reason=adjustment.reason)
    connection.execute(_INSERT_MOVEMENTS, movement)
    emit_product_changed(uow, row, stock=stock, version=version)
    uow.commit()
    return movement


def list_movements(uow: UnitOfWork, product_id: uuid.UUID, *, page: int, page_size: int) -> tuple[Sequence[Any], int]:
    """A product's ledger, newest first (archived products included: it is the operators' record)."""
    connection = uow.session.connection()
    if connection.execute(_PRODUCT_EXISTS, {"product_id": product_id}).first() is None:
        raise NotFound("no such product")
    total = connection.execute(_COUNT_MOVEMENTS, {"product_id": product_id}).scalar_one()
    rows = connection.execute(
        _MOVEMENTS_OF.order_by(MOVEMENTS.c.created_at.desc(), MOVEMENTS.c.id)
        .limit(page_size)
        .offset((page - 1) * page_size),
        {"product_id": product_id},
    ).all()
    return rows, total


# --- commits for paid orders (a batch handler) --------------------------------------------------------


def commit_stock(uow: UnitOfWork, requests: Sequence[StockRequest]) -> None:
    """Decide every order of the batch once: take all its lines from stock or none, in arrival order;
    answer each request with StockCommitted or StockRejected, and an order decided before (in an
    earlier batch, or earlier in this one) with the answer recorded for it."""
    first: dict[uuid.UUID, StockRequest] = {}
    for request in requests:
        first.setdefault(request.order_id, request)
    at = _now()
    connection = uow.session.connection()
    claimed = _claim_decisions(connection, first.values(), at)
    answers, moves = _decide(connection, [request for order_id, request in first.items() if order_id in claimed], at)
    earlier = [order_id for order_id in first if order_id not in claimed]
    if earlier:
        answers.update(_recorded_answers(connection, earlier))
    for request in requests:
        answer = answers[request.order_id]
        uow.emit(answer, correlation_id=request.order_id, caused_by=request)
        if request.order_id in claimed and first[request.order_id] is request:
            _log_decision(uow, request, answer)
    # One ProductChanged per product the batch moved, with its final stock and version.
    for row, stock, version, cause in moves:
        emit_product_changed(uow, row, stock=stock, version=version, caused_by=cause)


def _log_decision(uow: UnitOfWork, request: StockRequest, answer: EventData) -> None:
    """One line per order decided, in the trace of the event that asked (this is a batch handler)."""
    causation = uow.causation_of(request)
    outcome = "stock committed" if isinstance(answer, StockCommitted) else "stock rejected"
    with tracing.joined(causation.traceparent if causation else None):
        log.info(outcome, extra={"order_id": str(request.order_id)})


def _claim_decisions(connection: Connection, requests: Iterable[StockRequest], at: datetime) -> set[uuid.UUID]:
    """Claim each order's decision (presumed committed) before any product is locked; a competing
    delivery of the same order waits on the unique key until this transaction ends, then finds the
    decision taken. Claims go in order id order, so two batches claiming the same orders never
    deadlock. Returns the orders claimed now."""
    rows = [
        {
            "order_id": request.order_id,
            "outcome": "committed",
            "payment_id": request.payment_id,
            "lines": [line.model_dump(mode="json") for line in request.items],
            "shortages": [],
            "decided_at": at,
        }
        for request in sorted(requests, key=lambda r: r.order_id)
    ]
    return set(connection.execute(_claim_statement(connection.dialect.name), rows).scalars())


def _decide(
    connection: Connection, new: list[StockRequest], at: datetime
) -> tuple[dict[uuid.UUID, EventData], list[ProductMove]]:
    """Lock every product of the new orders once, decide the orders in arrival order in memory, then
    write stock, ledger and rejections in one statement each."""
    answers: dict[uuid.UUID, EventData] = {}
    moves: list[ProductMove] = []
    if not new:
        return answers, moves
    wanted = [domain.quantities_by_product(request.items) for request in new]
    product_ids = sorted(set().union(*wanted))
    locked = {row.id: row for row in connection.execute(_LOCK_PRODUCTS, {"ids": product_ids})}
    levels = {pid: domain.StockLevel(row.stock, row.is_active) for pid, row in locked.items()}
    decisions = domain.decide_in_order(wanted, levels)
    committed = [(request, decision) for request, decision in zip(new, decisions, strict=True) if decision.committed]
    if committed:
        written = _apply_deltas(connection, domain.net_deltas(d for _, d in committed), at)
        connection.execute(
            _INSERT_MOVEMENTS,
            [
                _movement(pid, delta, after, "order_commit", at, order_id=request.order_id)
                for request, decision in committed
                for pid, (delta, after) in decision.movements.items()
            ],
        )
        last_mover = {pid: request for request, decision in committed for pid in decision.movements}
        moves = [(locked[pid], stock, version, last_mover[pid]) for pid, (stock, version) in written.items()]
    rejected = [
        (request.order_id, decision.shortages)
        for request, decision in zip(new, decisions, strict=True)
        if decision.shortages
    ]
    if rejected:
        _record_rejections(connection, rejected)
    for request, decision in zip(new, decisions, strict=True):
        answers[request.order_id] = (
            StockCommitted(order_id=request.order_id, payment_id=request.payment_id, items=request.items)
            if decision.committed
            else StockRejected(order_id=request.order_id, payment_id=request.payment_id, shortages=decision.shortages)
        )
    return answers, moves


def _recorded_answers(connection: Connection, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, EventData]:
    answers: dict[uuid.UUID, EventData] = {}
    for row in connection.execute(_RECORDED, {"ids": order_ids}):
        answers[row.order_id] = (
            StockCommitted(
                order_id=row.order_id,
                payment_id=row.payment_id,
                items=[OrderLine.model_validate(line) for line in row.lines],
            )
            if row.outcome == "committed"
            else StockRejected(
                order_id=row.order_id,
                payment_id=row.payment_id,
                shortages=[Shortage.model_validate(s) for s in row.shortages],
            )
        )
    return answers


def _record_rejections(connection: Connection, rejected: list[tuple[uuid.UUID, list[Shortage]]]) -> None:
    params: dict[str, Any] = {}
    for i, (order_id, shortages) in enumerate(rejected):
        params[f"o{i}"] = order_id
        params[f"s{i}"] = [s.model_dump(mode="json") for s in shortages]
    connection.execute(_rejection_statement(len(rejected), connection.dialect.name), params)


# --- releases for refunded orders (a handler per event) -----------------------------------------------


def release_stock(uow: UnitOfWork, refund: PaymentRefunded) -> None:
    """Put back what the order took, once, when the refund says to restock, and only for the payment
    that paid it. A refund without restock leaves the stock (and a later one that restocks may still
    release it); any refund after the release releases nothing more."""
    if not refund.restock:
        return
    connection = uow.session.connection()
    # Locking the decision serialises two refunds of one order: the second sees released_at.
    decision = connection.execute(_LOCK_DECISION, {"order_id": refund.order_id}).one_or_none()
    if (
        decision is None
        or decision.outcome != "committed"
        or decision.payment_id != refund.payment_id
        or decision.released_at is not None
    ):
        return
    wanted = domain.quantities_by_product(OrderLine.model_validate(line) for line in decision.lines)
    # Products are archived, never deleted: every committed line still has its row.
    locked = {row.id: row for row in connection.execute(_LOCK_PRODUCTS, {"ids": list(wanted)})}
    at = _now()
    written = _apply_deltas(connection, wanted, at)
    reason = refund.reason[:500]
    connection.execute(
        _INSERT_MOVEMENTS,
        [
            _movement(pid, quantity, written[pid][0], "release", at, order_id=refund.order_id, reason=reason)
            for pid, quantity in wanted.items()
        ],
    )
    connection.execute(_MARK_RELEASED, {"released_order": refund.order_id, "at": at})
    for pid, (stock, version) in written.items():
        emit_product_changed(uow, locked[pid], stock=stock, version=version)


# --- statements -----------------------------------------------------------------------------------------


def _apply_deltas(
    connection: Connection, deltas: dict[uuid.UUID, int], at: datetime
) -> dict[uuid.UUID, tuple[int, int]]:
    """Add each delta to its product's stock and one to its version, in one statement; the (stock,
    version) each row has now. The rows are locked by this transaction already."""
    params: dict[str, Any] = {"at": at}
    for i, (product_id, delta) in enumerate(deltas.items()):
        params[f"p{i}"] = product_id
        params[f"d{i}"] = delta
    rows = connection.execute(_stock_statement(len(deltas)), params).all()
    written = {row.id: (row.stock, row.version) for row in rows}
    if len(written) != len(deltas):
        raise RuntimeError("a locked product row disappeared while its stock was written")
    return {product_id: written[product_id] for product_id in deltas}


@lru_cache(maxsize=256)
def _stock_statement(count: int) -> Update:
    """UPDATE of `count` products' stock by their deltas (p0..pN, d0..dN), built and compiled once per
    count: the version is incremented by the very statement that changes the row."""
    ids = [bindparam(f"p{i}", type_=GUID()) for i in range(count)]
    delta = case(*((PRODUCTS.c.id == pid, bindparam(f"d{i}", type_=Integer())) for i, pid in enumerate(ids)))
    return (
        update(PRODUCTS)
        .where(PRODUCTS.c.id.in_(ids))
        .values(stock=PRODUCTS.c.stock + delta, version=PRODUCTS.c.version + 1, updated_at=bindparam("at"))
        .returning(PRODUCTS.c.id, PRODUCTS.c.stock, PRODUCTS.c.version)
    )


@lru_cache(maxsize=256)
def _rejection_statement(count: int, dialect: str) -> Update:
    """UPDATE of `count` claimed decisions to rejected with their shortages (o0..oN, s0..sN)."""
    ids = [bindparam(f"o{i}", type_=GUID()) for i in range(count)]
    # PostgreSQL types a CASE of bare parameters as text, which a json column refuses; SQLite has no json
    # type to cast to (a CAST to an unknown type name would turn the text into a number).
    shortages = [bindparam(f"s{i}", type_=JSON()) for i in range(count)]
    values = [cast(s, JSON()) for s in shortages] if dialect == "postgresql" else shortages
    return (
        update(DECISIONS)
        .where(DECISIONS.c.order_id.in_(ids))
        .values(
            outcome="rejected",
            shortages=case(*((DECISIONS.c.order_id == o, v) for o, v in zip(ids, values, strict=True))),
        )
    )


@lru_cache(maxsize=4)
def _claim_statement(dialect: str) -> Any:
    return upsert_insert(dialect, DECISIONS).on_conflict_do_nothing().returning(DECISIONS.c.order_id)


def _movement(
    product_id: uuid.UUID,
    delta: int,
    stock_after: int,
    cause: str,
    at: datetime,
    *,
    order_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "product_id": product_id,
        "delta": delta,
        "cause": cause,
        "order_id": order_id,
        "reason": reason,
        "stock_after": stock_after,
        "created_at": at,
    }
