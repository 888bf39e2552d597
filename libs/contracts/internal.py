"""Shapes of the few synchronous reads between services, defined once for both ends."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import ProductChanged

# What one lookup may ask for: an order has at most 100 lines.
MAX_LOOKUP_IDS = 100


class ProductLookupRequest(BaseModel):
    """POST /internal/products/lookup on the catalog (service credential required)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_LOOKUP_IDS)


class ProductLookupResponse(BaseModel):
    """The products found (archived ones included, so a reader learns they are archived), each in the
    same shape and with the same version as the catalog's ProductChanged event: a reader applies an
    answer exactly as it applies the event."""

    products: list[ProductChanged]
