"""Routes of /api/orders: parse, call a use case of service.py, shape the answer. Answers are
serialised once, here (FastAPI would validate a returned model again); `response_model` keeps the
OpenAPI document true."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from orders import service
from orders.catalog import CatalogLookup
from orders.domain import OrderStatus, RequestedLine
from orders.schemas import OrderOut, OrderPage, PlaceOrderIn, ShipIn
from orders.settings import OrdersSettings
from shopkit.auth import Principal, current_principal, require_admin
from shopkit.observability import waiting_aside
from shopkit.openapi import depends_on, problems
from shopkit.prefer import preferred_wait
from shopkit.uow import UnitOfWork
from shopkit.webapp import get_runtime, get_uow

router = APIRouter(prefix="/api/orders", tags=["orders"])


async def principal(request: Request) -> Principal:
    # Verifying a token is CPU-only and quick: do it on the loop rather than hop to the threadpool.
    return await current_principal(request)


depends_on(principal, 401, bearer="required")


def _answer(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


# 503: the catalog or the database cannot answer now.
@router.post("", status_code=201, response_model=OrderOut, responses=problems(409, 503))
def place_order(
    body: PlaceOrderIn,
    request: Request,
    caller: Principal = Depends(principal),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", min_length=1, max_length=200),
) -> Response:
    settings: OrdersSettings = request.app.state.settings
    catalog: CatalogLookup = request.app.state.catalog
    request_ = service.OrderRequest(
        user_id=caller.user_id,
        lines=[RequestedLine(item.product_id, item.quantity) for item in body.items],
        shipping_address=body.shipping_address.model_dump(exclude_none=True) if body.shipping_address else None,
        idempotency_key=idempotency_key,
    )
    # The hot path opens its unit of work here, in the route's thread, rather than through the get_uow
    # dependency: FastAPI's generator-dependency machinery costs more CPU than the placement's SQL.
    with get_runtime(request).uow() as uow:
        order = service.place_order(
            uow, catalog.lookup_from_thread, request_, payment_timeout=settings.order_payment_timeout
        )
    return _answer(order, 201)


@router.get("", response_model=OrderPage)
def list_orders(
    caller: Principal = Depends(principal),
    uow: UnitOfWork = Depends(get_uow),
    page: int = Query(1, ge=1, le=1_000_000),
    page_size: int = Query(20, ge=1, le=100),
    status: OrderStatus | None = Query(None),
    user_id: uuid.UUID | None = Query(None),
) -> Response:
    return _answer(service.list_orders(uow, caller, page=page, page_size=page_size, status=status, user_id=user_id))


@router.get(
    "/{order_id}",
    response_model=OrderOut,
    responses=problems(404, 503) | {304: {"description": "Not Modified: the order still has the ETag sent"}},
)
async def get_order(
    order_id: uuid.UUID,
    request: Request,
    caller: Principal = Depends(principal),
    if_none_match: str | None = Header(default=None, alias="If-None-Match", max_length=200),
    prefer: str | None = Header(default=None, alias="Prefer", max_length=200),
) -> Response:
    """The order, with its ETag. With `If-None-Match` it is 304 while the order has not changed, and
    with `Prefer: wait=N` too (a long poll) the answer waits up to N seconds (at most 20) for a change:
    a customer waiting for a confirmation asks once instead of polling."""
    runtime = get_runtime(request)

    def read() -> Response:
        # The unit of work is opened here, in the route's thread, as placement's; read-only, since the
        # read is one statement.
        with runtime.uow(read_only=True) as uow:
            return _versioned(service.get_order(uow, order_id, caller), if_none_match)

    wait = preferred_wait(prefer, most=MOST_WAIT) if if_none_match else 0.0
    if not wait:
        return await run_in_threadpool(read)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    # Watched before the first read: a change committed between that read and the wait still wakes it.
    with service.ORDER_CHANGED.watch(order_id) as change:
        while True:
            answer = await run_in_threadpool(read)
            left = deadline - loop.time()
            if answer.status_code != 304 or left <= 0:
                break
            with waiting_aside() as granted:
                if not granted:
                    # Too many wait already: no wait applied, and a hint not to ask again at once.
                    answer.headers["Retry-After"] = "1"
                    return answer
                # Read again now and then even if not woken: another replica may commit the change.
                await change.wait_async(min(left, WAIT_RECHECK))
    answer.headers["Preference-Applied"] = f"wait={wait:.0f}"
    return answer


# Longest long poll, and how often it reads the order again meanwhile.
MOST_WAIT = 20.0
WAIT_RECHECK = 1.0


def _versioned(order: OrderOut, if_none_match: str | None) -> Response:
    body = order.model_dump_json().encode()
    etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    if if_none_match is not None and etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.post("/{order_id}/cancel", response_model=OrderOut, responses=problems(403, 404, 409))
def cancel_order(
    order_id: uuid.UUID, caller: Principal = Depends(principal), uow: UnitOfWork = Depends(get_uow)
) -> Response:
    return _answer(service.cancel_order(uow, order_id, caller))


@router.post("/{order_id}/ship", response_model=OrderOut, responses=problems(404, 409))
def ship_order(
    order_id: uuid.UUID,
    body: ShipIn,
    _admin: Principal = Depends(require_admin),
    uow: UnitOfWork = Depends(get_uow),
) -> Response:
    return _answer(service.ship_order(uow, order_id, carrier=body.carrier, tracking_number=body.tracking_number))


@router.post("/{order_id}/deliver", response_model=OrderOut, responses=problems(404, 409))
def deliver_order(
    order_id: uuid.UUID, _admin: Principal = Depends(require_admin), uow: UnitOfWork = Depends(get_uow)
) -> Response:
    return _answer(service.deliver_order(uow, order_id))
