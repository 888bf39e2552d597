"""The one synchronous read orders makes: current price, stock and active flag of the products."""

from __future__ import annotations

import logging
import uuid

from pydantic import ValidationError

from orders.domain import CatalogProduct
from orders.schemas import CatalogLookupIn
from shopkit.http import ServiceClient, UpstreamUnavailable
from shopkit.problems import ServiceUnavailable

log = logging.getLogger("orders.catalog")

LOOKUP_PATH = "/internal/products/lookup"


async def lookup_products(client: ServiceClient, ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogProduct]:
    """All products in ONE round trip; unknown ids are simply absent. Anything but a good answer is
    503: without the catalog's prices an order cannot be placed, and nothing has been written yet."""
    try:
        response = await client.request("POST", LOOKUP_PATH, json_body={"ids": [str(i) for i in ids]})
    except UpstreamUnavailable as exc:
        log.warning("catalog unreachable", extra={"error": str(exc)})
        raise ServiceUnavailable("the catalog is unavailable; try again shortly", headers={"Retry-After": "1"}) from exc
    if response.status != 200:
        log.warning("catalog lookup failed", extra={"status": response.status})
        raise ServiceUnavailable("the catalog could not answer; try again shortly", headers={"Retry-After": "1"})
    try:
        answer = CatalogLookupIn.model_validate(response.body)
    except ValidationError as exc:
        log.error("catalog lookup answered an unexpected body", extra={"error": str(exc)})
        raise ServiceUnavailable("the catalog answered unexpectedly") from exc
    return {
        p.id: CatalogProduct(
            id=p.id, sku=p.sku, name=p.name, price=p.price, currency=p.currency, stock=p.stock, is_active=p.is_active
        )
        for p in answer.items
    }
