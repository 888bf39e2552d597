"""Settings of the orders service (environment, prefix SHOP_)."""

from __future__ import annotations

from pydantic import Field

from shopkit.settings import KitSettings


class OrdersSettings(KitSettings):
    # Seconds an order waits for its payment before the timeout job cancels it.
    order_payment_timeout: float = Field(default=900.0, gt=0)
    # How often the timeout job and the saga sweeper look for work.
    order_sweep_interval: float = Field(default=5.0, gt=0)
    # An order in `paid` or `refund_pending` this long (seconds) is re-driven by the sweeper.
    order_stuck_after: float = Field(default=60.0, gt=0)
    order_sweep_batch: int = Field(default=100, ge=1)
    # The longest a placement waits for the catalog to answer a read-through (never longer than
    # SHOP_UPSTREAM_TIMEOUT): shorter than the gateway's wait on orders, so a frozen catalog gives the
    # customer orders' 503 with Retry-After rather than the gateway's 504.
    order_catalog_timeout: float = Field(default=2.0, gt=0)
    # After the catalog failed to answer a read-through, placements of products the view has not
    # heard of are answered 503 at once for this many seconds (also their Retry-After).
    order_catalog_retry_after: float = Field(default=2.0, gt=0)
