"""Routes of the catalog: parse, call a use case, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from catalog import service
from catalog.schemas import (
    ProductCreate,
    ProductFilters,
    ProductLookup,
    ProductLookupResult,
    ProductOut,
    ProductPage,
    ProductSnapshot,
    ProductUpdate,
    StockAdjustment,
    StockMovementOut,
    StockMovementPage,
)
from shopkit.auth import Principal, bearer_token, current_principal, require_admin, require_service
from shopkit.uow import UnitOfWork
from shopkit.webapp import get_uow

router = APIRouter(prefix="/api/products", tags=["catalog"])
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


@router.get("", response_model=ProductPage)
def list_products(filters: Annotated[ProductFilters, Query()], uow: Uow) -> ProductPage:
    products, total = service.list_products(uow, filters)
    return ProductPage(
        items=[ProductOut.model_validate(p) for p in products],
        total=total,
        page=filters.page,
        page_size=filters.page_size,
    )


@router.post("", response_model=ProductOut, status_code=status.HTTP_201_CREATED)
def create_product(body: ProductCreate, _admin: Admin, uow: Uow) -> ProductOut:
    return ProductOut.model_validate(service.create_product(uow, body))


@router.get("/{product_id}", response_model=ProductOut)
def get_product(
    product_id: uuid.UUID, uow: Uow, principal: Annotated[Principal | None, Depends(optional_principal)]
) -> ProductOut:
    include_archived = principal is not None and principal.is_admin
    return ProductOut.model_validate(service.get_product(uow, product_id, include_archived=include_archived))


@router.patch("/{product_id}", response_model=ProductOut)
def update_product(product_id: uuid.UUID, body: ProductUpdate, _admin: Admin, uow: Uow) -> ProductOut:
    return ProductOut.model_validate(service.update_product(uow, product_id, body))


@router.delete("/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
def archive_product(product_id: uuid.UUID, _admin: Admin, uow: Uow) -> Response:
    service.archive_product(uow, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{product_id}/stock-adjustments", response_model=StockMovementOut, status_code=201)
def adjust_stock(product_id: uuid.UUID, body: StockAdjustment, _admin: Admin, uow: Uow) -> StockMovementOut:
    return StockMovementOut.model_validate(service.adjust_stock(uow, product_id, body))


@router.get("/{product_id}/stock-movements", response_model=StockMovementPage)
def list_stock_movements(
    product_id: uuid.UUID, _admin: Admin, uow: Uow, page: Page = 1, page_size: PageSize = 20
) -> StockMovementPage:
    movements, total = service.list_movements(uow, product_id, page=page, page_size=page_size)
    return StockMovementPage(
        items=[StockMovementOut.model_validate(m) for m in movements], total=total, page=page, page_size=page_size
    )


@internal.post("/lookup", response_model=ProductLookupResult)
def lookup_products(body: ProductLookup, uow: Uow) -> ProductLookupResult:
    """For orders, at placement: unknown ids are simply absent from the answer."""
    products = service.lookup_products(uow, body.ids)
    return ProductLookupResult(items=[ProductSnapshot.model_validate(p) for p in products])
