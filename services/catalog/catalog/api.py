"""Routes of the catalog: parse, call a use case, shape the answer.

Routes are async and run their use case on the thread pool themselves: a sync route costs a second
thread hop to validate its answer. Each answer is validated once, by FastAPI, from the rows the use
case returns (never built into a model here and validated again there)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from catalog import service, stock
from catalog.schemas import (
    CategoryOut,
    ProductCreate,
    ProductFilters,
    ProductOut,
    ProductPage,
    ProductUpdate,
    StockAdjustment,
    StockMovementOut,
    StockMovementPage,
)
from contracts.internal import ProductLookupRequest, ProductLookupResponse
from shopkit.auth import Principal, bearer_token, current_principal, require_admin, require_service
from shopkit.openapi import depends_on, problems
from shopkit.problems import Forbidden, Unauthenticated
from shopkit.uow import UnitOfWork
from shopkit.webapp import get_uow

router = APIRouter(prefix="/api/products", tags=["catalog"])
categories = APIRouter(prefix="/api/categories", tags=["catalog"])
internal = APIRouter(
    prefix="/internal/products", tags=["internal"], include_in_schema=False, dependencies=[Depends(require_service)]
)

Uow = Annotated[UnitOfWork, Depends(get_uow)]
Admin = Annotated[Principal, Depends(require_admin)]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]


async def optional_principal(request: Request) -> Principal | None:
    """The caller if a token came along: the public product page shows archived products to admins."""
    if bearer_token(request) is None:
        return None
    return await current_principal(request)


depends_on(optional_principal, 401, bearer="optional")
Caller = Annotated[Principal | None, Depends(optional_principal)]


@router.get("", response_model=ProductPage, responses=problems(403))
async def list_products(filters: Annotated[ProductFilters, Query()], uow: Uow, principal: Caller) -> Any:
    """Active products; `include_archived=true` lists every product and is for admins only (401
    without a token, 403 for a customer)."""
    if filters.include_archived:
        if principal is None:
            raise Unauthenticated()
        if not principal.is_admin:
            raise Forbidden("listing archived products needs the admin role")
    rows, total = await run_in_threadpool(service.list_products, uow, filters)
    return {"items": rows, "total": total, "page": filters.page, "page_size": filters.page_size}


@router.post("", response_model=ProductOut, status_code=status.HTTP_201_CREATED, responses=problems(409))
async def create_product(body: ProductCreate, _admin: Admin, uow: Uow) -> Any:
    return await run_in_threadpool(service.create_product, uow, body)


@router.get("/{product_id}", response_model=ProductOut, responses=problems(404))
async def get_product(product_id: uuid.UUID, uow: Uow, principal: Caller) -> Any:
    include_archived = principal is not None and principal.is_admin
    return await run_in_threadpool(lambda: service.get_product(uow, product_id, include_archived=include_archived))


@router.patch("/{product_id}", response_model=ProductOut, responses=problems(404))
async def update_product(product_id: uuid.UUID, body: ProductUpdate, _admin: Admin, uow: Uow) -> Any:
    return await run_in_threadpool(service.update_product, uow, product_id, body)


@router.delete("/{product_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404))
async def archive_product(product_id: uuid.UUID, _admin: Admin, uow: Uow) -> Response:
    """Archives the product: customers no longer find it (404), an admin still reads it and its stock
    ledger; PATCH `is_active: true` brings it back."""
    await run_in_threadpool(service.archive_product, uow, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{product_id}/stock-adjustments", response_model=StockMovementOut, status_code=201, responses=problems(404, 409)
)
async def adjust_stock(product_id: uuid.UUID, body: StockAdjustment, _admin: Admin, uow: Uow) -> Any:
    return await run_in_threadpool(stock.adjust_stock, uow, product_id, body)


@router.get("/{product_id}/stock-movements", response_model=StockMovementPage, responses=problems(404))
async def list_stock_movements(
    product_id: uuid.UUID, _admin: Admin, uow: Uow, page: Page = 1, page_size: PageSize = 20
) -> Any:
    movements, total = await run_in_threadpool(
        lambda: stock.list_movements(uow, product_id, page=page, page_size=page_size)
    )
    return {"items": movements, "total": total, "page": page, "page_size": page_size}


@categories.get("", response_model=list[CategoryOut])
async def list_categories(uow: Uow) -> Any:
    """Every category of the active products, with how many active products it has, by slug."""
    return await run_in_threadpool(service.list_categories, uow)


@internal.post("/lookup", response_model=ProductLookupResponse)
async def lookup_products(body: ProductLookupRequest, uow: Uow) -> Any:
    """For orders, for products it has not heard of yet: each as its ProductChanged carries it (version
    included, archived ones too); unknown ids are simply absent from the answer."""
    return {"products": await run_in_threadpool(service.lookup_products, uow, body.ids)}
