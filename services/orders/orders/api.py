"""Routes of /api/orders: parse, call the use case, shape the answer."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from orders import service
from orders.catalog import lookup_products
from orders.domain import (
    InsufficientStock,
    InvalidLines,
    MixedCurrencies,
    OrderStatus,
    RequestedLine,
    UnknownProducts,
    merge_lines,
    price_lines,
)
from orders.schemas import OrderOut, OrderPage, PlaceOrderIn
from orders.settings import OrdersSettings
from shopkit.auth import Principal, current_principal
from shopkit.db import Database
from shopkit.http import ServiceClient
from shopkit.problems import Conflict, Unprocessable
from shopkit.webapp import get_runtime

router = APIRouter(prefix="/api/orders", tags=["orders"])


async def principal(request: Request) -> Principal:
    # Verifying a token is CPU-only and quick: do it on the loop rather than hop to the threadpool.
    return await current_principal(request)


def get_db(request: Request) -> Database:
    return get_runtime(request).db


@router.post("", status_code=201, response_model=OrderOut)
async def place_order(
    body: PlaceOrderIn,
    request: Request,
    caller: Principal = Depends(principal),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", min_length=1, max_length=200),
) -> OrderOut:
    db = get_db(request)
    settings: OrdersSettings = request.app.state.settings
    if idempotency_key is not None:
        # A replay must not depend on the catalog being up, nor on stock still being there.
        earlier = await run_in_threadpool(service.find_by_idempotency_key, db, caller.user_id, idempotency_key)
        if earlier is not None:
            return earlier
    try:
        lines = merge_lines(RequestedLine(item.product_id, item.quantity) for item in body.items)
    except InvalidLines as exc:
        raise Unprocessable(str(exc)) from exc
    catalog: ServiceClient = request.app.state.catalog
    products = await lookup_products(catalog, [line.product_id for line in lines])
    try:
        currency, priced = price_lines(lines, products)
    except UnknownProducts as exc:
        raise Unprocessable(str(exc), product_ids=[str(p) for p in exc.product_ids]) from exc
    except (MixedCurrencies, InvalidLines) as exc:
        raise Unprocessable(str(exc)) from exc
    except InsufficientStock as exc:
        raise Conflict(
            str(exc),
            shortages=[{"product_id": str(p), "requested": want, "available": have} for p, want, have in exc.shortages],
        ) from exc
    return await run_in_threadpool(
        lambda: service.place_order(
            db,
            user_id=caller.user_id,
            currency=currency,
            lines=priced,
            idempotency_key=idempotency_key,
            payment_timeout=settings.order_payment_timeout,
        )
    )


@router.get("", response_model=OrderPage)
def list_orders(
    request: Request,
    caller: Principal = Depends(principal),
    page: int = Query(1, ge=1, le=1_000_000),
    page_size: int = Query(20, ge=1, le=100),
    status: OrderStatus | None = Query(None),
    user_id: uuid.UUID | None = Query(None),
) -> OrderPage:
    return service.list_orders(get_db(request), caller, page=page, page_size=page_size, status=status, user_id=user_id)


@router.get("/{order_id}", response_model=OrderOut)
def get_order(order_id: uuid.UUID, request: Request, caller: Principal = Depends(principal)) -> OrderOut:
    return service.get_order(get_db(request), order_id, caller)


@router.post("/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: uuid.UUID, request: Request, caller: Principal = Depends(principal)) -> OrderOut:
    return service.cancel_order(get_db(request), order_id, caller)
